/*
 * sluice.hub.query._indexrows: the indexer's insert text straight from a stored LogGroupList body.
 *
 * Why C: building the text in Python (a dict per log from wire/_logdecode, then joining its items, batch.py)
 * cost ~37 us of the hub's CPU per kB... about 70% of indexing, so the indexer could not keep up with 20 MB/s
 * of PutLogs on the bench machine. Walking the wire format and writing the text in one pass, with no Python
 * object per log, does the same in a few percent of that.
 *
 * build_text(body, first_seq, names) -> (text, records) | None returns exactly what
 * batch.build_from_body(body, first_seq, names) returns (the format is described in batch.py), or None when
 * it would not take the common case: a malformed list or group, a string that is not UTF-8 or holds a
 * separator (RS, US, NUL), a log with a key twice or a content key that the log dict would merge with its
 * meta keys (__time__, __topic__, __source__, __tag__:...), a tag key twice, or no record at all. The caller
 * then takes the Python path, which gives those cases their exact meaning; so the two never disagree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* the walk runs with the GIL released: the readers only return -1 on malformed input (we then decline) */
#define PBREAD_NO_PYERR
#include "../../wire/_pbread.h"

#define RS 0x1e
#define US 0x1f
#define MISSING 0x02
#define MAX_KEYS 256 /* contents per log on this path; more -> the Python path */

typedef struct {
    char *buf;
    size_t len, cap;
} Out;

static int out_grow(Out *o, size_t need) {
    if (o->len + need <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + need) cap *= 2;
    char *b = PyMem_RawRealloc(o->buf, cap);
    if (b == NULL) return -1; /* the caller raises MemoryError once it holds the GIL again */
    o->buf = b;
    o->cap = cap;
    return 0;
}

static inline int out_put(Out *o, const void *p, size_t n) {
    if (out_grow(o, n) < 0) return -1;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

static inline int out_byte(Out *o, char c) {
    if (o->len == o->cap && out_grow(o, 1) < 0) return -1;
    o->buf[o->len++] = c;
    return 0;
}

static inline int out_u64(Out *o, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return out_put(o, tmp + sizeof(tmp) - n, (size_t)n);
}

static inline int out_i64(Out *o, long long v) {
    if (v < 0) {
        if (out_byte(o, '-') < 0) return -1;
        return out_u64(o, (uint64_t)0 - (uint64_t)v);
    }
    return out_u64(o, (uint64_t)v);
}

/* Whether [p, p+n) is strict UTF-8 (as Python's decoder: no surrogates, no overlongs, <= U+10FFFF) holding
 * none of NUL, RS, US. */
static int clean_text(const uint8_t *p, Py_ssize_t n) {
    const uint8_t *end = p + n;
    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            if (c == 0 || c == RS || c == US) return 0;
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            if (end - p < 2 || (p[1] & 0xc0) != 0x80) return 0;
            p += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (end - p < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
            if (c == 0xe0 && p[1] < 0xa0) return 0; /* overlong */
            if (c == 0xed && p[1] > 0x9f) return 0; /* surrogate */
            p += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (end - p < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
            if (c == 0xf0 && p[1] < 0x90) return 0; /* overlong */
            if (c == 0xf4 && p[1] > 0x8f) return 0; /* > U+10FFFF */
            p += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

static inline int span_eq(Cur a, const uint8_t *p, Py_ssize_t n) {
    return a.end - a.p == n && memcmp(a.p, p, (size_t)n) == 0;
}

static inline int is_meta_key(Cur k) {
    static const char *meta[] = {"__time__", "__topic__", "__source__"};
    Py_ssize_t n = k.end - k.p;
    for (int j = 0; j < 3; j++)
        if (span_eq(k, (const uint8_t *)meta[j], (Py_ssize_t)strlen(meta[j]))) return 1;
    return n >= 8 && memcmp(k.p, "__tag__:", 8) == 0;
}

/* An index key name, UTF-8, and where it was found in the previous log (a hint: logs repeat their layout). */
typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
    int kind; /* 0 content, 2 __topic__, 3 __source__, 4 tag (p/n: the tag key) */
    Py_ssize_t hint;
} Name;

typedef struct {
    Cur topic, source;
    Cur tag_k[MAX_KEYS], tag_v[MAX_KEYS];
    int ntags;
} Header;

/* Status: 1 written, 0 not this path (caller returns None), -1 out of memory. Nothing below touches a
 * Python object: build_text runs it with the GIL released. */
#define NOT_HERE 0

static int read_header(Cur g, Header *h) {
    h->topic.p = h->topic.end = h->source.p = h->source.end = g.p;
    h->ntags = 0;
    while (g.p < g.end) {
        uint32_t f;
        int wt;
        Cur sub;
        if (read_key(&g, &f, &wt) < 0) return NOT_HERE;
        if (wt == 2 && (f == 3 || f == 4 || f == 6)) {
            if (read_len(&g, &sub) < 0) return NOT_HERE;
            if (f == 3) h->topic = sub;
            else if (f == 4) h->source = sub;
            else {
                Cur k, v;
                if (h->ntags == MAX_KEYS || read_pair(sub, &k, &v) < 0) return NOT_HERE;
                h->tag_k[h->ntags] = k;
                h->tag_v[h->ntags++] = v;
            }
        } else if (skip(&g, wt) < 0) {
            return NOT_HERE;
        }
    }
    if (!clean_text(h->topic.p, h->topic.end - h->topic.p) || !clean_text(h->source.p, h->source.end - h->source.p))
        return NOT_HERE;
    for (int i = 0; i < h->ntags; i++) {
        Cur k = h->tag_k[i], v = h->tag_v[i];
        if (!clean_text(k.p, k.end - k.p) || !clean_text(v.p, v.end - v.p)) return NOT_HERE;
        for (int j = 0; j < i; j++)
            if (span_eq(h->tag_k[j], k.p, k.end - k.p)) return NOT_HERE; /* the dict would keep one */
    }
    return 1;
}

typedef struct {
    Cur k[MAX_KEYS], v[MAX_KEYS];
    int n;
} Contents;

/* One log's time and contents; 1, or NOT_HERE. ``prev`` (the previous log of the group, its keys checked)
 * spares re-checking keys that are the same bytes at the same position. */
static int read_log(Cur m, uint64_t *time, Contents *c, const Contents *prev) {
    *time = 0;
    c->n = 0;
    while (m.p < m.end) {
        uint32_t f;
        int wt;
        if (read_key(&m, &f, &wt) < 0) return NOT_HERE;
        if (f == 1 && wt == 0) {
            if (read_varint(&m, time) < 0) return NOT_HERE;
        } else if (f == 2 && wt == 2) {
            Cur content, k, v;
            if (c->n == MAX_KEYS || read_len(&m, &content) < 0 || read_pair(content, &k, &v) < 0) return NOT_HERE;
            c->k[c->n] = k;
            c->v[c->n++] = v;
        } else if (skip(&m, wt) < 0) {
            return NOT_HERE;
        }
    }
    int same = prev != NULL && prev->n == c->n;
    for (int i = 0; i < c->n; i++) {
        Cur k = c->k[i], v = c->v[i];
        if (!clean_text(v.p, v.end - v.p)) return NOT_HERE;
        if (same && span_eq(prev->k[i], k.p, k.end - k.p)) continue;
        same = 0;
        if (!clean_text(k.p, k.end - k.p) || is_meta_key(k)) return NOT_HERE;
        for (int j = 0; j < i; j++)
            if (span_eq(c->k[j], k.p, k.end - k.p)) return NOT_HERE; /* the dict would keep one */
    }
    return 1;
}

static int put_pairs(Out *o, const Cur *k, const Cur *v, int n) {
    for (int i = 0; i < n; i++) {
        if (i && out_byte(o, 0) < 0) return -1;
        if (out_put(o, k[i].p, (size_t)(k[i].end - k[i].p)) < 0 || out_byte(o, 0) < 0 ||
            out_put(o, v[i].p, (size_t)(v[i].end - v[i].p)) < 0)
            return -1;
    }
    return 0;
}

static int put_name(Out *o, Name *nm, const Header *h, const Contents *c) {
    switch (nm->kind) {
    case 2: return out_put(o, h->topic.p, (size_t)(h->topic.end - h->topic.p));
    case 3: return out_put(o, h->source.p, (size_t)(h->source.end - h->source.p));
    case 4:
        for (int i = 0; i < h->ntags; i++)
            if (span_eq(h->tag_k[i], nm->p, nm->n))
                return out_put(o, h->tag_v[i].p, (size_t)(h->tag_v[i].end - h->tag_v[i].p));
        return out_byte(o, MISSING);
    default:
        if (nm->hint < c->n && span_eq(c->k[nm->hint], nm->p, nm->n))
            return out_put(o, c->v[nm->hint].p, (size_t)(c->v[nm->hint].end - c->v[nm->hint].p));
        for (int i = 0; i < c->n; i++)
            if (span_eq(c->k[i], nm->p, nm->n)) {
                nm->hint = i;
                return out_put(o, c->v[i].p, (size_t)(c->v[i].end - c->v[i].p));
            }
        return out_byte(o, MISSING);
    }
}

/* Appends one group's records; 1, NOT_HERE or -1. */
static int group_records(Cur g, long long seq, Name *names, Py_ssize_t nnames, Out *o, Py_ssize_t *recs,
                         Contents *bufs) {
    Header *h = PyMem_RawMalloc(sizeof(Header));
    if (h == NULL) return -1;
    int r = read_header(g, h);
    if (r != 1) goto done;
    Contents *cur = &bufs[0], *prev = NULL;
    long long i = 0;
    while (g.p < g.end) {
        uint32_t f;
        int wt;
        Cur sub;
        if (read_key(&g, &f, &wt) < 0) { r = NOT_HERE; goto done; }
        if (!(f == 1 && wt == 2)) {
            if (skip(&g, wt) < 0) { r = NOT_HERE; goto done; }
            continue;
        }
        if (read_len(&g, &sub) < 0) { r = NOT_HERE; goto done; }
        uint64_t time;
        if ((r = read_log(sub, &time, cur, prev)) != 1) goto done;
        r = -1;
        if (*recs && out_byte(o, RS) < 0) goto done;
        if (out_i64(o, seq) < 0 || out_byte(o, US) < 0 || out_i64(o, i++) < 0 || out_byte(o, US) < 0 ||
            out_u64(o, (uint32_t)time) < 0 || out_byte(o, US) < 0 ||
            out_put(o, h->topic.p, (size_t)(h->topic.end - h->topic.p)) < 0 || out_byte(o, US) < 0 ||
            out_put(o, h->source.p, (size_t)(h->source.end - h->source.p)) < 0 || out_byte(o, US) < 0 ||
            put_pairs(o, h->tag_k, h->tag_v, h->ntags) < 0 || out_byte(o, US) < 0 ||
            put_pairs(o, cur->k, cur->v, cur->n) < 0)
            goto done;
        for (Py_ssize_t j = 0; j < nnames; j++)
            if (out_byte(o, US) < 0 || put_name(o, &names[j], h, cur) < 0) goto done;
        (*recs)++;
        r = 1;
        prev = cur;
        cur = cur == &bufs[0] ? &bufs[1] : &bufs[0];
    }
    r = 1;
done:
    PyMem_RawFree(h);
    return r;
}

static PyObject *build_text(PyObject *self, PyObject *args) {
    PyObject *body_obj, *names_obj;
    long long first;
    if (!PyArg_ParseTuple(args, "OLO", &body_obj, &first, &names_obj)) return NULL;
    /* a tuple of our own (not the caller's list itself): the walk reads the names' UTF-8 with the GIL
       released, so a list another thread changes meanwhile must not free them under it */
    PyObject *names_seq = PySequence_Tuple(names_obj);
    if (names_seq == NULL) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(body_obj, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(names_seq);
        return NULL;
    }
    PyObject *result = NULL;
    Out o = {NULL, 0, 0};
    Py_ssize_t nnames = PySequence_Fast_GET_SIZE(names_seq), recs = 0;
    Name *names = PyMem_Calloc((size_t)(nnames ? nnames : 1), sizeof(Name));
    Contents *bufs = PyMem_RawMalloc(2 * sizeof(Contents));
    if (names == NULL || bufs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < nnames; j++) {
        PyObject *s = PySequence_Fast_GET_ITEM(names_seq, j);
        if (!PyUnicode_Check(s)) {
            PyErr_SetString(PyExc_TypeError, "names must be a sequence of str");
            goto done;
        }
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(s, &n);
        if (p == NULL) { /* a lone surrogate: the Python path */
            PyErr_Clear();
            result = Py_NewRef(Py_None);
            goto done;
        }
        Name *nm = &names[j];
        nm->p = (const uint8_t *)p;
        nm->n = n;
        nm->hint = j;
        if (strcmp(p, "__time__") == 0) { /* an int in the log dict: batch.build_text gives up, so do we */
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (strcmp(p, "__topic__") == 0) nm->kind = 2;
        else if (strcmp(p, "__source__") == 0) nm->kind = 3;
        else if (n >= 8 && memcmp(p, "__tag__:", 8) == 0) {
            nm->kind = 4;
            nm->p += 8;
            nm->n -= 8;
        }
        if ((Py_ssize_t)strlen(p) != n) nm->kind = 0; /* an embedded NUL: matches no clean key */
    }
    Cur list = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    long long seq = first;
    int r = 1;
    /* the hub's event loop runs PutLogs meanwhile (bodies are MBs); a small one is not worth the switch */
    PyThreadState *ts = view.len >= (16 << 10) ? PyEval_SaveThread() : NULL;
    if (out_grow(&o, (size_t)view.len + (size_t)view.len / 4 + 64) < 0) r = -1;
    while (list.p < list.end && r == 1) {
        uint32_t f;
        int wt;
        Cur g;
        if (read_key(&list, &f, &wt) < 0) r = NOT_HERE;
        else if (wt == 2 && f == 1) {
            if (read_len(&list, &g) < 0) r = NOT_HERE;
            else r = group_records(g, seq++, names, nnames, &o, &recs, bufs);
        } else if (skip(&list, wt) < 0) {
            r = NOT_HERE;
        }
    }
    if (ts != NULL) PyEval_RestoreThread(ts);
    if (r < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (r == NOT_HERE || recs == 0) { /* a malformed body: the Python path reports it */
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *text = PyUnicode_DecodeUTF8(o.buf, (Py_ssize_t)o.len, "strict");
    if (text != NULL) {
        result = Py_BuildValue("(Nn)", text, recs);
    }
done:
    PyMem_RawFree(o.buf);
    PyMem_Free(names);
    PyMem_RawFree(bufs);
    PyBuffer_Release(&view);
    Py_DECREF(names_seq);
    return result;
}

static PyMethodDef methods[] = {
    {"build_text", build_text, METH_VARARGS,
     "build_text(body, first_seq, names) -> (text, records) | None: batch.build_from_body's answer for a "
     "stored LogGroupList body, or None where the Python path must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_indexrows", NULL, -1, methods};

PyMODINIT_FUNC PyInit__indexrows(void) { return PyModule_Create(&module); }
