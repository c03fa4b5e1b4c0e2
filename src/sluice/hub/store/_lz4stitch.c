/* A PullLogs body in lz4, made from the stored records without decompressing or compressing (#19.6).
 *
 * Why: the store keeps each LogGroup as the client sent it, usually one lz4 block (store/segments.py). A
 * PullLogs answer with Accept-Encoding: lz4 is one lz4 block of the LogGroupList: each group framed as
 * 0x0A, varint(length), group. Decompressing every record and compressing the whole list again cost the hub
 * ~3x the CPU of reading it. An lz4 block is a series of sequences (token, literals, 2-byte offset, match
 * length), the last one literals only; a stored record's matches only reach back inside its own group, so
 * the records' sequences can follow one another unchanged, provided the literals-only last sequence of one
 * record, the next group's frame header and the first literals of the next record become one literal run
 * (a new token and length) before that record's first match. Offsets and match lengths are copied as they
 * are: the decoded bytes are exactly those of the records, framed.
 *
 * Each record is checked before anything is taken from it: magic, codec, CRC-32 (of the header after its
 * crc and the payload, as segments.py writes it), and the lz4 structure itself (lengths inside the payload,
 * offsets within the bytes the record produced so far, the decoded length equal to the header's), so a block
 * made here always decodes, to the stored groups. Damage raises ValueError and a zstd record LookupError:
 * the caller then reads the slow way, which reports damage as before.
 *
 * stitch(runs) -> (block: bytes, raw_size: int, records: int); runs: buffers of whole v2 records.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#define HEADER 32
#define MAGIC 0xB7
#define CODEC_NONE 0
#define CODEC_LZ4 1
#define CODEC_ZSTD 2

typedef struct {
    const uint8_t *p;
    size_t n;
} Piece;

typedef struct {
    uint8_t *out;
    size_t len, cap;
    Piece *pend; /* the literal run being gathered, as pieces of the inputs and frame headers */
    size_t npend, cappend, pendlen;
} Writer;

/* Everything below runs without the GIL: raw malloc, errors as strings ("" = out of memory). */
static const char *const NOMEM = "";

static int reserve(Writer *w, size_t more) {
    if (w->len + more <= w->cap) return 0;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + more) cap *= 2;
    uint8_t *out = PyMem_RawRealloc(w->out, cap);
    if (!out) return -1;
    w->out = out;
    w->cap = cap;
    return 0;
}

static int literal(Writer *w, const uint8_t *p, size_t n) {
    if (!n) return 0;
    if (w->npend == w->cappend) {
        size_t cap = w->cappend ? w->cappend * 2 : 64;
        Piece *pend = PyMem_RawRealloc(w->pend, cap * sizeof(Piece));
        if (!pend) return -1;
        w->pend = pend;
        w->cappend = cap;
    }
    w->pend[w->npend].p = p;
    w->pend[w->npend].n = n;
    w->npend++;
    w->pendlen += n;
    return 0;
}

/* One sequence: the gathered literals, then ``tail`` (offset and match-length bytes, copied) if any. */
static int flush(Writer *w, unsigned match_nibble, const uint8_t *tail, size_t ntail) {
    size_t lit = w->pendlen;
    if (reserve(w, 1 + lit / 255 + 1 + lit + ntail) < 0) return -1;
    uint8_t *o = w->out + w->len;
    *o++ = (uint8_t)(((lit >= 15 ? 15 : lit) << 4) | match_nibble);
    if (lit >= 15) {
        size_t rest = lit - 15;
        while (rest >= 255) { *o++ = 255; rest -= 255; }
        *o++ = (uint8_t)rest;
    }
    for (size_t i = 0; i < w->npend; i++) {
        memcpy(o, w->pend[i].p, w->pend[i].n);
        o += w->pend[i].n;
    }
    if (ntail) { memcpy(o, tail, ntail); o += ntail; }
    w->len = (size_t)(o - w->out);
    w->npend = 0;
    w->pendlen = 0;
    return 0;
}

static int verbatim(Writer *w, const uint8_t *p, size_t n) {
    if (!n) return 0;
    if (reserve(w, n) < 0) return -1;
    memcpy(w->out + w->len, p, n);
    w->len += n;
    return 0;
}

/* One lz4 record into the writer: its first sequence joins the gathered literal run, the sequences after it
   up to the last are copied as they are (one memcpy), the last one's literals start the next run. Every
   sequence is still parsed and checked. NULL, or what is wrong with it (NOMEM: no memory). */
static const char *walk_lz4(Writer *w, const uint8_t *p, size_t n, uint32_t raw_len) {
    size_t ip = 0, copy_from = 0;
    uint64_t produced = 0;
    int first = 1;
    for (;;) {
        if (ip >= n) return "lz4 data ends inside a sequence";
        size_t start = ip;
        unsigned token = p[ip++];
        size_t lit = token >> 4;
        if (lit == 15) {
            unsigned b;
            do {
                if (ip >= n) return "lz4 literal length runs past the record";
                b = p[ip++];
                lit += b;
            } while (b == 255);
        }
        if (lit > n - ip) return "lz4 literals run past the record";
        const uint8_t *literals = p + ip;
        ip += lit;
        produced += lit;
        if (ip == n) { /* the last sequence: literals only */
            if (!first && verbatim(w, p + copy_from, start - copy_from) < 0) return NOMEM;
            if (literal(w, literals, lit) < 0) return NOMEM;
            break;
        }
        if (n - ip < 2) return "lz4 offset cut short";
        size_t tail = ip;
        size_t off = (size_t)p[ip] | ((size_t)p[ip + 1] << 8);
        ip += 2;
        uint64_t ml = token & 15;
        if (ml == 15) {
            unsigned b;
            do {
                if (ip >= n) return "lz4 match length runs past the record";
                b = p[ip++];
                ml += b;
            } while (b == 255);
        }
        ml += 4;
        if (off == 0 || off > produced) return "lz4 offset outside the group";
        /* the block format's end rules (a match starts 12 or more bytes before the end, its last 5 bytes are
           literals), checked per group: the group ends the block if it is the last one, and a record that
           breaks them may still pass lz4's own decoder (its fast path) while the stitched block does not */
        if (produced + 12 > raw_len) return "lz4 match starts too near the group's end";
        produced += ml;
        if (produced + 5 > raw_len) return "lz4 match ends too near the group's end";
        if (first) {
            if (literal(w, literals, lit) < 0 || flush(w, token & 15, p + tail, ip - tail) < 0) return NOMEM;
            first = 0;
            copy_from = ip;
        }
    }
    if (produced != raw_len) return "lz4 data of the wrong length";
    return NULL;
}

typedef struct {
    const char *why; /* NULL: done; NOMEM; "zstd"; else damage */
    Py_ssize_t run;
    size_t at;
    uint64_t raw_total;
    size_t records;
} Outcome;

static Outcome gather(Writer *w, Py_buffer *views, Py_ssize_t nruns, uint8_t *frames) {
    Outcome o = {NULL, 0, 0, 0, 0};
    for (Py_ssize_t r = 0; r < nruns; r++) {
        const uint8_t *buf = views[r].buf;
        size_t n = (size_t)views[r].len, pos = 0;
        o.run = r;
        while (pos < n) {
            o.at = pos;
            if (n - pos < HEADER) { o.why = "a record header cut short"; return o; }
            const uint8_t *h = buf + pos;
            uint32_t crc = (uint32_t)h[0] | ((uint32_t)h[1] << 8) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 24);
            unsigned magic = h[4], codec = h[5], reserved = (unsigned)h[6] | ((unsigned)h[7] << 8);
            uint32_t raw_len = (uint32_t)h[8] | ((uint32_t)h[9] << 8) | ((uint32_t)h[10] << 16) | ((uint32_t)h[11] << 24);
            uint32_t stored = (uint32_t)h[12] | ((uint32_t)h[13] << 8) | ((uint32_t)h[14] << 16) | ((uint32_t)h[15] << 24);
            if (magic != MAGIC || codec > CODEC_ZSTD || reserved || stored > n - pos - HEADER) {
                o.why = "no valid record";
                return o;
            }
            uLong c = crc32(0L, Z_NULL, 0);
            const uint8_t *cp = h + 4;
            size_t left = HEADER - 4 + (size_t)stored;
            while (left) { /* crc32's length is a uInt */
                uInt step = left > 0x40000000u ? 0x40000000u : (uInt)left;
                c = crc32(c, cp, step);
                cp += step;
                left -= step;
            }
            if ((uint32_t)c != crc) { o.why = "checksum mismatch"; return o; }
            if (codec == CODEC_ZSTD) { o.why = "zstd"; return o; }
            uint8_t *f = frames + o.records++ * 6;
            size_t flen = 0;
            f[flen++] = 0x0A;
            uint32_t v = raw_len;
            while (v >= 0x80) { f[flen++] = (uint8_t)(v | 0x80); v >>= 7; }
            f[flen++] = (uint8_t)v;
            if (literal(w, f, flen) < 0) { o.why = NOMEM; return o; }
            const uint8_t *payload = h + HEADER;
            if (codec == CODEC_NONE) {
                if (stored != raw_len) { o.why = "raw record of the wrong length"; return o; }
                if (literal(w, payload, stored) < 0) { o.why = NOMEM; return o; }
            } else {
                const char *why = walk_lz4(w, payload, stored, raw_len);
                if (why) { o.why = why; return o; }
            }
            o.raw_total += flen + raw_len;
            pos += HEADER + stored;
        }
    }
    if (o.records && flush(w, 0, NULL, 0) < 0) o.why = NOMEM; /* the last sequence: literals only */
    return o;
}

static PyObject *stitch(PyObject *Py_UNUSED(self), PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "stitch() takes a sequence of buffers");
    if (!seq) return NULL;
    Py_ssize_t nruns = PySequence_Fast_GET_SIZE(seq);
    Py_buffer *views = PyMem_Calloc(nruns ? (size_t)nruns : 1, sizeof(Py_buffer));
    Writer w = {0};
    uint8_t *frames = NULL;
    PyObject *result = NULL;
    Py_ssize_t got = 0;
    size_t total = 0;
    if (!views) { PyErr_NoMemory(); goto done; }
    for (; got < nruns; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_SIMPLE) < 0) goto done;
        total += (size_t)views[got].len;
    }
    /* frame headers (0x0A and a varint of at most 5 bytes) live here while a literal run is gathered: one
       slot per record, and a record takes at least HEADER bytes */
    frames = PyMem_RawMalloc((total / HEADER + 1) * 6);
    if (!frames || reserve(&w, total + total / 128 + 64) < 0) { PyErr_NoMemory(); goto done; }
    Outcome o;
    Py_BEGIN_ALLOW_THREADS
    o = gather(&w, views, nruns, frames);
    Py_END_ALLOW_THREADS
    if (o.why == NOMEM) { PyErr_NoMemory(); goto done; }
    if (o.why && strcmp(o.why, "zstd") == 0) {
        PyErr_SetString(PyExc_LookupError, "a zstd record: not stitched");
        goto done;
    }
    if (o.why) {
        PyErr_Format(PyExc_ValueError, "run %zd, record at +%zu: %s", o.run, o.at, o.why);
        goto done;
    }
    PyObject *block = PyBytes_FromStringAndSize((const char *)w.out, (Py_ssize_t)w.len);
    if (!block) goto done;
    result = Py_BuildValue("(NKn)", block, (unsigned long long)o.raw_total, (Py_ssize_t)o.records);
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_RawFree(frames);
    PyMem_RawFree(w.out);
    PyMem_RawFree(w.pend);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"stitch", stitch, METH_O,
     "stitch(runs) -> (lz4 block of the LogGroupList, its raw size, records): runs are buffers of whole v2 "
     "records; ValueError on damage, LookupError on a zstd record."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lz4stitch", NULL, -1, methods};

PyMODINIT_FUNC PyInit__lz4stitch(void) { return PyModule_Create(&module); }
