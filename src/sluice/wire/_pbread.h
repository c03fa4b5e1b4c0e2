/*
 * Protobuf wire-format readers shared by the C decoders (wire/_logdecode.c, client/_sdklogs.c): a cursor over
 * a buffer, varints (the one-byte common case inline), field keys, length-delimited fields, skipping unknown
 * fields, and proto2 strings (str if valid UTF-8, else bytes, as the protobuf runtime gives them). Malformed
 * input raises ValueError ("malformed LogGroup: ..."); nothing reads past the buffer.
 */
#ifndef SLUICE_PBREAD_H
#define SLUICE_PBREAD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Cur;

/* A file that walks buffers with the GIL released defines PBREAD_NO_PYERR before including this header: the
 * readers then return -1 on malformed input without setting a Python error (the caller reports it). */
static inline int bad(const char *what) {
#ifdef PBREAD_NO_PYERR
    (void)what;
#else
    PyErr_Format(PyExc_ValueError, "malformed LogGroup: %s", what);
#endif
    return -1;
}

static int read_varint_slow(Cur *c, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end) return bad("truncated varint");
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return bad("varint too long");
}

/* Field keys, lengths and times are nearly always one byte (a key) or one to three: the common case inline. */
static inline int read_varint(Cur *c, uint64_t *out) {
    if (c->p < c->end && *c->p < 0x80) {
        *out = *c->p++;
        return 0;
    }
    return read_varint_slow(c, out);
}

/* Reads a field key; returns 0 and sets field/wire type, or -1 with an error set. */
static inline int read_key(Cur *c, uint32_t *field, int *wt) {
    uint64_t k;
    if (read_varint(c, &k) < 0) return -1;
    if (k > UINT32_MAX) return bad("field number too large"); /* as the protobuf runtime refuses it */
    *field = (uint32_t)(k >> 3);
    *wt = (int)(k & 7);
    if (*field == 0) return bad("field number 0");
    return 0;
}

static inline int read_len(Cur *c, Cur *sub) {
    uint64_t n;
    if (read_varint(c, &n) < 0) return -1;
    if (n > (uint64_t)(c->end - c->p)) return bad("length past the end");
    sub->p = c->p;
    sub->end = c->p + n;
    c->p += n;
    return 0;
}

static inline int skip(Cur *c, int wt) {
    uint64_t v;
    Cur sub;
    switch (wt) {
    case 0: return read_varint(c, &v);
    case 1:
        if (c->end - c->p < 8) return bad("truncated fixed64");
        c->p += 8;
        return 0;
    case 2: return read_len(c, &sub);
    case 5:
        if (c->end - c->p < 4) return bad("truncated fixed32");
        c->p += 4;
        return 0;
    default: return bad("unsupported wire type");
    }
}

/* A string field: str if valid UTF-8, else bytes (as the protobuf runtime does for proto2). New reference. */
static inline PyObject *text(const uint8_t *p, Py_ssize_t n) {
    PyObject *s = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        s = PyBytes_FromStringAndSize((const char *)p, n);
    }
    return s;
}

/* Key and Value spans of a Content or LogTag message (last occurrence wins; absent = empty): the one reading of
 * these two-field messages that every C decoder shares, so they accept and refuse the same bytes. */
static inline int read_pair(Cur m, Cur *key, Cur *value) {
    key->p = key->end = value->p = value->end = m.p;
    while (m.p < m.end) {
        uint32_t f;
        int wt;
        if (read_key(&m, &f, &wt) < 0) return -1;
        if (wt == 2 && (f == 1 || f == 2)) {
            if (read_len(&m, f == 1 ? key : value) < 0) return -1;
        } else if (skip(&m, wt) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Logs of a group nearly always repeat their keys in the same order: the i-th key of the previous log is kept
 * and reused when the bytes match, so a group builds each key string once. */
#define KEY_CACHE 128

typedef struct {
    const uint8_t *ptr;
    Py_ssize_t len;
    PyObject *str; /* owned */
} CachedKey;

/* The i-th string of a log (p, n) through a cache of `slots` entries: the cached string when it is the same
 * bytes, else a new one (kept for the next log). New reference. */
static inline PyObject *cached_text(CachedKey *cache, Py_ssize_t slots, Py_ssize_t i, const uint8_t *p,
                                    Py_ssize_t n) {
    if (i < slots) {
        CachedKey *e = &cache[i];
        if (e->str != NULL && e->len == n && memcmp(e->ptr, p, (size_t)n) == 0) return Py_NewRef(e->str);
        PyObject *s = text(p, n);
        if (s == NULL) return NULL;
        Py_XSETREF(e->str, Py_NewRef(s));
        e->ptr = p;
        e->len = n;
        return s;
    }
    return text(p, n);
}

/* The i-th key of a log through a KEY_CACHE-entry cache. */
static inline PyObject *cached_key(CachedKey *cache, Py_ssize_t i, const uint8_t *p, Py_ssize_t n) {
    return cached_text(cache, KEY_CACHE, i, p, n);
}

#endif
