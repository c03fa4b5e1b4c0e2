/*
 * sluice.hub.query._splscan: an SPL `where` over stored LogGroups without building a Python object per log.
 *
 * Why C: a PullLogs with `query=` (#21) spent nearly all of its hub CPU turning each log into a dict and
 * running the predicate's closures over it (80 MB/s of raw data per hub CPU second against 213 for the same
 * pull without a query). Here the predicate is compiled once into a small node array (hub/query/spl.py builds
 * it from the parsed statement, only for forms this file evaluates exactly as spl.py does), each log's
 * Contents are walked on the wire bytes, and the answer is written as the stored bytes of the kept logs.
 *
 * Exactness: every comparison follows spl.py's rules (text vs numeric comparison, three-valued logic, missing
 * fields are null, last duplicate key wins, __time__/__topic__/__source__/__tag__:k as the decoder sets them). Where a
 * value would need Python's own parsing to decide (non-ASCII or whitespace around a number, an int beyond
 * 64 bits, text that is not valid UTF-8 in a text comparison or `like`), or the group is malformed, the group
 * is handed to the caller's Python evaluator instead ("fallback"): the answer is then Python's, by
 * construction.
 *
 * Output: a LogGroupList (framed as the store frames groups); each group that keeps every log is copied whole,
 * one that keeps some is copied without its dropped Logs fields (everything else in place), one that keeps
 * none is left out; the same bytes spl.py's Python path writes.
 *
 * Schema (proto2, SLS's): LogGroup{1: Logs, 3: Topic, 4: Source, 6: LogTags}, Log{1: Time, 2: Contents},
 * Content/LogTag{1: Key, 2: Value}. The walk is the one wire/_logdecode.c's group_logs does (same reader,
 * wire/_pbread.h), so a group it rejects is rejected here too (and goes to the fallback).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PBREAD_NO_PYERR /* groups are scanned with the GIL released: readers report errors by -1 alone */
#include "../../wire/_pbread.h"

#define CAPSULE_NAME "sluice.splscan.pred"
#define MAX_NODES 4096
#define MAX_FIELDS 64
#define GIL_FREE_BYTES 16384 /* groups at least this large are scanned with the GIL released */

/* K_TAG: "__tag__:<key>", the group's last LogTag of that key, else the log's content of that full name */
enum { K_CONTENT = 0, K_TIME = 1, K_TOPIC = 2, K_SOURCE = 3, K_TAG = 4 };
/* N_CALL: a Python callable of one field's value. Mode 0 (regexp_like's compiled RE2 pattern .search): given
 * the value's text, true when it answers something other than None, null for a missing field. Mode 1 (a
 * predicate of spl.py's closures over that one field): given the value as the decoder gives it (str, or bytes
 * when not UTF-8; None when missing), it answers True/False/None; anything else sends the group to Python.
 * Answers are remembered per distinct value within a where() call; a predicate with a call keeps the GIL. */
enum { N_AND = 0, N_OR = 1, N_NOT = 2, N_CONST = 3, N_CMP = 4, N_NULL = 5, N_LIKE = 6, N_IN = 7, N_CALL = 8 };
/* comparison modes: STRICT is spl.py's `field = 'lit'` (str == str: no decoding needed), TEXT its _compare on
 * text, NUM/BIGINT/DOUBLE numeric comparison of the value as it is / cast(.. as bigint) / cast(.. as double) */
enum { M_STRICT = 0, M_TEXT = 1, M_NUM = 2, M_BIGINT = 3, M_DOUBLE = 4 };
enum { OP_EQ = 0, OP_NE = 1, OP_LT = 2, OP_LE = 3, OP_GT = 4, OP_GE = 5 };
/* three-valued results, plus "Python must decide this group" and "a Python error is set" (both end the log's
 * evaluation: any result >= R_FALLBACK) */
enum { R_FALSE = 0, R_TRUE = 1, R_NULL = 2, R_FALLBACK = 3, R_ERROR = 4 };

typedef struct {
    int is_int;
    int64_t i;
    double d;
} Num;

typedef struct {
    int mode, op;
    char *lit; /* text modes: the literal's UTF-8 */
    Py_ssize_t len;
    Num num; /* numeric modes */
} Cmp;

typedef struct {
    int type;
    int a, b;       /* children (and/or/not) */
    int field;      /* cmp/null/like/in */
    int negate;     /* null/like/in */
    int castmode;   /* null/in: M_NUM (the value itself), M_BIGINT, M_DOUBLE */
    int cval;       /* const */
    Cmp cmp;        /* cmp */
    int nopt;       /* in */
    Cmp *opts;
    int nseg;       /* like: '%'-separated literal pieces; one piece = the whole value */
    char **seg;
    Py_ssize_t *seglen;
    PyObject *call; /* N_CALL (owned) */
    int slot;       /* N_CALL: its memo's index */
    int callmode;   /* N_CALL: 0 regexp search, 1 closure */
} Node;

typedef struct {
    int kind;
    char *name;
    Py_ssize_t len;
} Field;

typedef struct {
    int nfields, nnodes, root, need_header, has_tags, has_calls; /* has_calls: how many N_CALL nodes */
    Field fields[MAX_FIELDS];
    Node *nodes;
} Pred;

typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
    int present;
    int64_t ival; /* K_TIME */
} Val;

/* ------------------------------------------------------------------ values */

static int utf8_valid(const uint8_t *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        Py_ssize_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }
        else if (c >= 0xE1 && c <= 0xEC) need = 2;
        else if (c == 0xED) { need = 2; hi = 0x9F; }
        else if (c >= 0xEE && c <= 0xEF) need = 2;
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; }
        else return 0;
        if (n - i - 1 < need) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (Py_ssize_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        i += need + 1;
    }
    return 1;
}

/* A value that is text to Python (str): R_TRUE if it is valid UTF-8, R_FALLBACK if it is not (Python holds it
 * as bytes and _text() would decode it with replacement characters). */
static inline int text_ok(const uint8_t *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] >= 0x80) return utf8_valid(p + i, n - i) ? R_TRUE : R_FALLBACK;
    return R_TRUE;
}

static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* spl.py's _num() on a str: R_TRUE with *out, R_NULL when Python finds no (finite) number in it, R_FALLBACK
 * when only Python's int()/float() can tell (whitespace, '_', non-ASCII digits, an int past 64 bits). */
static int parse_num(const uint8_t *p, Py_ssize_t n, Num *out) {
    int other = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c >= 0x80 || c == '_' || c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F))
            return R_FALLBACK;
        if (!(is_digit(c) || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E')) other = 1;
    }
    if (other) return R_NULL; /* letters etc.: not a number, or inf/nan (not finite: null too) */
    Py_ssize_t i = 0;
    int neg = 0;
    if (i < n && (p[i] == '+' || p[i] == '-')) neg = p[i++] == '-';
    Py_ssize_t d0 = i;
    while (i < n && is_digit(p[i])) i++;
    Py_ssize_t nd = i - d0;
    if (i == n) {
        if (nd == 0) return R_NULL;
        uint64_t v = 0;
        for (Py_ssize_t k = d0; k < n; k++) {
            uint64_t dgt = (uint64_t)(p[k] - '0');
            if (v > (UINT64_C(9223372036854775808) - dgt) / 10) return R_FALLBACK;
            v = v * 10 + dgt;
        }
        if (!neg && v > (uint64_t)INT64_MAX) return R_FALLBACK;
        out->is_int = 1;
        out->i = neg ? (int64_t)(0 - v) : (int64_t)v;
        return R_TRUE;
    }
    /* float: digits ['.' digits*] | '.' digits+, then [eE [sign] digits+] */
    Py_ssize_t frac = 0;
    if (p[i] == '.') {
        i++;
        Py_ssize_t f0 = i;
        while (i < n && is_digit(p[i])) i++;
        frac = i - f0;
    }
    if (nd == 0 && frac == 0) return R_NULL;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        Py_ssize_t e0 = i;
        while (i < n && is_digit(p[i])) i++;
        if (i == e0) return R_NULL;
    }
    if (i != n) return R_NULL;
    char small[128];
    char *buf = n < (Py_ssize_t)sizeof(small) ? small : PyMem_RawMalloc((size_t)n + 1); /* no GIL here */
    if (buf == NULL) return R_FALLBACK;
    memcpy(buf, p, (size_t)n);
    buf[n] = 0;
    double d = strtod(buf, NULL);
    if (buf != small) PyMem_RawFree(buf);
    if (!isfinite(d)) return R_NULL;
    out->is_int = 0;
    out->d = d;
    return R_TRUE;
}

/* exact comparison of an int and a double (as Python compares int and float) */
static int cmp_int_double(int64_t i, double d) {
    if (d >= 9223372036854775808.0) return -1;
    if (d < -9223372036854775808.0) return 1;
    double fl = floor(d);
    int64_t fi = (int64_t)fl;
    if (i < fi) return -1;
    if (i > fi) return 1;
    return d > fl ? -1 : 0;
}

static int num_cmp(const Num *a, const Num *b) {
    if (a->is_int && b->is_int) return (a->i > b->i) - (a->i < b->i);
    if (!a->is_int && !b->is_int) return (a->d > b->d) - (a->d < b->d);
    if (a->is_int) return cmp_int_double(a->i, b->d);
    return -cmp_int_double(b->i, a->d);
}

static inline int apply_op(int op, int c) {
    switch (op) {
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    default: return c >= 0;
    }
}

/* The value of a field as a number under a mode (spl.py's _num, or _cast to bigint/double). */
static int value_num(const Field *f, const Val *v, int mode, Num *out) {
    if (!v->present) return R_NULL;
    int r;
    if (f->kind == K_TIME) {
        out->is_int = 1;
        out->i = v->ival;
        r = R_TRUE;
    } else {
        r = parse_num(v->p, v->n, out);
        if (r != R_TRUE) return r;
    }
    if (mode == M_BIGINT && !out->is_int && out->d != floor(out->d)) return R_NULL;
    if (mode == M_DOUBLE && out->is_int) {
        out->d = (double)out->i; /* round to nearest even, as Python's float(int) */
        out->is_int = 0;
    }
    return R_TRUE;
}

static int eval_cmp(const Pred *pr, const Cmp *c, int field, const Val *vals) {
    const Val *v = &vals[field];
    if (!v->present) return R_NULL;
    if (c->mode == M_STRICT) {
        int eq = v->n == c->len && memcmp(v->p, c->lit, (size_t)c->len) == 0;
        return (c->op == OP_EQ) == eq ? R_TRUE : R_FALSE;
    }
    if (c->mode == M_TEXT) {
        if (text_ok(v->p, v->n) == R_FALLBACK) return R_FALLBACK;
        Py_ssize_t m = v->n < c->len ? v->n : c->len;
        int r = m ? memcmp(v->p, c->lit, (size_t)m) : 0;
        if (r == 0) r = (v->n > c->len) - (v->n < c->len);
        return apply_op(c->op, r) ? R_TRUE : R_FALSE;
    }
    Num x;
    int r = value_num(&pr->fields[field], v, c->mode, &x);
    if (r != R_TRUE) return r;
    return apply_op(c->op, num_cmp(&x, &c->num)) ? R_TRUE : R_FALSE;
}

static int like_match(const Node *nd, const uint8_t *p, Py_ssize_t n) {
    if (nd->nseg == 1) return n == nd->seglen[0] && memcmp(p, nd->seg[0], (size_t)n) == 0;
    Py_ssize_t first = nd->seglen[0], last = nd->seglen[nd->nseg - 1];
    if (n < first + last) return 0;
    if (memcmp(p, nd->seg[0], (size_t)first) != 0) return 0;
    if (memcmp(p + n - last, nd->seg[nd->nseg - 1], (size_t)last) != 0) return 0;
    const uint8_t *at = p + first, *end = p + n - last;
    for (int k = 1; k < nd->nseg - 1; k++) {
        Py_ssize_t len = nd->seglen[k];
        if (len == 0) continue;
        if (end - at < len) return 0;
        const uint8_t *hit = memmem(at, (size_t)(end - at), nd->seg[k], (size_t)len);
        if (hit == NULL) return 0;
        at = hit + len;
    }
    return 1;
}

/* The answers of an N_CALL for values seen in this body (values repeat: a status, a user agent), keyed by the
 * value's bytes, which stay in the body for the whole where() call. Direct-mapped, MEMO_SLOTS per N_CALL, plus
 * one for a missing field. */
#define MEMO_SLOTS 64
typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
    int r; /* result + 1; 0: empty */
} CallMemo;

static inline CallMemo *memo_slot(CallMemo *memo, int call, const uint8_t *p, Py_ssize_t n) {
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return &memo[call * (MEMO_SLOTS + 1) + (h & (MEMO_SLOTS - 1))];
}

static int eval(const Pred *pr, int i, const Val *vals, CallMemo *memo) {
    const Node *nd = &pr->nodes[i];
    int a, b;
    switch (nd->type) {
    case N_AND:
        a = eval(pr, nd->a, vals, memo);
        if (a == R_FALSE || a >= R_FALLBACK) return a;
        b = eval(pr, nd->b, vals, memo);
        if (b == R_FALSE || b >= R_FALLBACK) return b;
        return a == R_NULL || b == R_NULL ? R_NULL : R_TRUE;
    case N_OR:
        a = eval(pr, nd->a, vals, memo);
        if (a == R_TRUE || a >= R_FALLBACK) return a;
        b = eval(pr, nd->b, vals, memo);
        if (b == R_TRUE || b >= R_FALLBACK) return b;
        return a == R_NULL || b == R_NULL ? R_NULL : R_FALSE;
    case N_NOT:
        a = eval(pr, nd->a, vals, memo);
        return a == R_TRUE ? R_FALSE : a == R_FALSE ? R_TRUE : a;
    case N_CONST:
        return nd->cval;
    case N_CMP:
        return eval_cmp(pr, &nd->cmp, nd->field, vals);
    case N_NULL: {
        const Val *v = &vals[nd->field];
        int isnull;
        if (!v->present) isnull = 1;
        else if (nd->castmode == M_NUM) isnull = 0;
        else {
            Num x;
            int r = value_num(&pr->fields[nd->field], v, nd->castmode, &x);
            if (r == R_FALLBACK) return r;
            isnull = r == R_NULL;
        }
        return isnull != nd->negate ? R_TRUE : R_FALSE;
    }
    case N_LIKE: {
        const Val *v = &vals[nd->field];
        if (!v->present) return R_NULL;
        if (text_ok(v->p, v->n) == R_FALLBACK) return R_FALLBACK;
        return like_match(nd, v->p, v->n) != nd->negate ? R_TRUE : R_FALSE;
    }
    case N_IN: {
        const Val *v = &vals[nd->field];
        if (!v->present) return R_NULL;
        if (nd->castmode != M_NUM) { /* in (...) of a cast: null when the cast is */
            Num x;
            int r = value_num(&pr->fields[nd->field], v, nd->castmode, &x);
            if (r != R_TRUE) return r;
        }
        int hit = 0;
        for (int k = 0; k < nd->nopt && !hit; k++) {
            int r = eval_cmp(pr, &nd->opts[k], nd->field, vals);
            if (r == R_FALLBACK) return r;
            hit = r == R_TRUE;
        }
        return hit != nd->negate ? R_TRUE : R_FALSE;
    }
    case N_CALL: { /* spl.py's _text(value) (invalid UTF-8 read with replacement characters), then the call */
        const Val *v = &vals[nd->field];
        CallMemo *m;
        if (!v->present) {
            if (nd->callmode == 0) return R_NULL;
            m = &memo[nd->slot * (MEMO_SLOTS + 1) + MEMO_SLOTS]; /* the answer for a missing field */
            if (m->r) return m->r - 1;
        } else {
            m = memo_slot(memo, nd->slot, v->p, v->n);
            if (m->r && m->n == v->n && memcmp(m->p, v->p, (size_t)v->n) == 0) return m->r - 1;
        }
        PyObject *arg;
        if (!v->present) arg = Py_NewRef(Py_None);
        else if (nd->callmode == 0) arg = PyUnicode_DecodeUTF8((const char *)v->p, v->n, "replace");
        else arg = text(v->p, v->n);
        if (arg == NULL) return R_ERROR;
        PyObject *r = PyObject_CallOneArg(nd->call, arg);
        Py_DECREF(arg);
        if (r == NULL) return R_ERROR;
        int hit;
        if (nd->callmode == 0) hit = r != Py_None ? R_TRUE : R_FALSE;
        else hit = r == Py_True ? R_TRUE : r == Py_False ? R_FALSE : r == Py_None ? R_NULL : R_FALLBACK;
        Py_DECREF(r);
        m->p = v->p;
        m->n = v->n;
        m->r = hit + 1;
        return hit;
    }
    }
    return R_FALLBACK;
}

/* ------------------------------------------------------------------ compiling */

static void pred_free(Pred *pr) {
    if (pr == NULL) return;
    for (int f = 0; f < pr->nfields; f++) PyMem_Free(pr->fields[f].name);
    if (pr->nodes != NULL) {
        for (int i = 0; i < pr->nnodes; i++) {
            Node *nd = &pr->nodes[i];
            PyMem_Free(nd->cmp.lit);
            for (int k = 0; k < nd->nopt; k++) PyMem_Free(nd->opts[k].lit);
            PyMem_Free(nd->opts);
            for (int k = 0; k < nd->nseg; k++) PyMem_Free(nd->seg[k]);
            PyMem_Free(nd->seg);
            PyMem_Free(nd->seglen);
            Py_XDECREF(nd->call);
        }
        PyMem_Free(pr->nodes);
    }
    PyMem_Free(pr);
}

static void capsule_free(PyObject *cap) { pred_free(PyCapsule_GetPointer(cap, CAPSULE_NAME)); }

static int copy_bytes(PyObject *o, char **out, Py_ssize_t *len) {
    char *p;
    if (PyBytes_AsStringAndSize(o, &p, len) < 0) return -1;
    *out = PyMem_Malloc((size_t)*len + 1);
    if (*out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*out, p, (size_t)*len);
    return 0;
}

static int small_int(PyObject *o, int lo, int hi, int *out) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < lo || v > hi) {
        PyErr_SetString(PyExc_ValueError, "splscan: value out of range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* (mode, op, literal) -> Cmp; literal bytes for text modes, int/float for numeric ones */
static int make_cmp(PyObject *mode, PyObject *op, PyObject *lit, Cmp *c) {
    if (small_int(mode, M_STRICT, M_DOUBLE, &c->mode) < 0 || small_int(op, OP_EQ, OP_GE, &c->op) < 0) return -1;
    if (c->mode == M_STRICT && c->op != OP_EQ && c->op != OP_NE) {
        PyErr_SetString(PyExc_ValueError, "splscan: strict comparison is = or != only");
        return -1;
    }
    if (c->mode <= M_TEXT) return copy_bytes(lit, &c->lit, &c->len);
    if (PyLong_Check(lit)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(lit, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "splscan: integer literal past 64 bits");
            return -1;
        }
        c->num.is_int = 1;
        c->num.i = v;
        return 0;
    }
    if (PyFloat_Check(lit)) {
        c->num.is_int = 0;
        c->num.d = PyFloat_AS_DOUBLE(lit);
        if (isnan(c->num.d)) {
            PyErr_SetString(PyExc_ValueError, "splscan: nan literal");
            return -1;
        }
        return 0;
    }
    PyErr_SetString(PyExc_TypeError, "splscan: numeric literal expected");
    return -1;
}

static int child(PyObject *t, Py_ssize_t k, int self, int *out) {
    if (small_int(PyTuple_GET_ITEM(t, k), 0, self - 1, out) < 0) return -1;
    return 0;
}

static int make_node(Pred *pr, int idx, PyObject *t) {
    Node *nd = &pr->nodes[idx];
    Py_ssize_t n = PyTuple_Check(t) ? PyTuple_GET_SIZE(t) : 0;
    if (n < 2 || small_int(PyTuple_GET_ITEM(t, 0), N_AND, N_CALL, &nd->type) < 0) goto bad;
    switch (nd->type) {
    case N_AND:
    case N_OR:
        if (n != 3) goto bad;
        return child(t, 1, idx, &nd->a) < 0 || child(t, 2, idx, &nd->b) < 0 ? -1 : 0;
    case N_NOT:
        if (n != 2) goto bad;
        return child(t, 1, idx, &nd->a);
    case N_CONST:
        if (n != 2) goto bad;
        return small_int(PyTuple_GET_ITEM(t, 1), R_FALSE, R_NULL, &nd->cval);
    case N_CMP: /* (N_CMP, field, mode, op, lit) */
        if (n != 5 || small_int(PyTuple_GET_ITEM(t, 1), 0, pr->nfields - 1, &nd->field) < 0) goto bad;
        return make_cmp(PyTuple_GET_ITEM(t, 2), PyTuple_GET_ITEM(t, 3), PyTuple_GET_ITEM(t, 4), &nd->cmp);
    case N_NULL: /* (N_NULL, field, castmode, negate) */
        if (n != 4 || small_int(PyTuple_GET_ITEM(t, 1), 0, pr->nfields - 1, &nd->field) < 0) goto bad;
        if (small_int(PyTuple_GET_ITEM(t, 2), M_NUM, M_DOUBLE, &nd->castmode) < 0) return -1;
        return small_int(PyTuple_GET_ITEM(t, 3), 0, 1, &nd->negate);
    case N_LIKE: { /* (N_LIKE, field, negate, (piece, ...)) */
        if (n != 4 || small_int(PyTuple_GET_ITEM(t, 1), 0, pr->nfields - 1, &nd->field) < 0) goto bad;
        if (small_int(PyTuple_GET_ITEM(t, 2), 0, 1, &nd->negate) < 0) return -1;
        PyObject *segs = PyTuple_GET_ITEM(t, 3);
        if (!PyTuple_Check(segs) || PyTuple_GET_SIZE(segs) < 1 || PyTuple_GET_SIZE(segs) > 1024) goto bad;
        int k = (int)PyTuple_GET_SIZE(segs);
        nd->seg = PyMem_Calloc((size_t)k, sizeof(char *));
        nd->seglen = PyMem_Calloc((size_t)k, sizeof(Py_ssize_t));
        if (nd->seg == NULL || nd->seglen == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        nd->nseg = k;
        for (int j = 0; j < k; j++)
            if (copy_bytes(PyTuple_GET_ITEM(segs, j), &nd->seg[j], &nd->seglen[j]) < 0) return -1;
        return 0;
    }
    case N_CALL: /* (N_CALL, field, callable[, mode]) */
        if ((n != 3 && n != 4) || small_int(PyTuple_GET_ITEM(t, 1), 0, pr->nfields - 1, &nd->field) < 0) goto bad;
        if (!PyCallable_Check(PyTuple_GET_ITEM(t, 2))) goto bad;
        if (n == 4 && small_int(PyTuple_GET_ITEM(t, 3), 0, 1, &nd->callmode) < 0) return -1;
        nd->call = Py_NewRef(PyTuple_GET_ITEM(t, 2));
        nd->slot = pr->has_calls++;
        return 0;
    case N_IN: { /* (N_IN, field, castmode, negate, ((mode, lit), ...)) */
        if (n != 5 || small_int(PyTuple_GET_ITEM(t, 1), 0, pr->nfields - 1, &nd->field) < 0) goto bad;
        if (small_int(PyTuple_GET_ITEM(t, 2), M_NUM, M_DOUBLE, &nd->castmode) < 0) return -1;
        if (small_int(PyTuple_GET_ITEM(t, 3), 0, 1, &nd->negate) < 0) return -1;
        PyObject *opts = PyTuple_GET_ITEM(t, 4);
        if (!PyTuple_Check(opts) || PyTuple_GET_SIZE(opts) > 1024) goto bad;
        int k = (int)PyTuple_GET_SIZE(opts);
        nd->opts = PyMem_Calloc((size_t)(k ? k : 1), sizeof(Cmp));
        if (nd->opts == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        nd->nopt = k;
        for (int j = 0; j < k; j++) {
            PyObject *o = PyTuple_GET_ITEM(opts, j);
            if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 2) goto bad;
            PyObject *eq = PyLong_FromLong(OP_EQ);
            if (eq == NULL) return -1;
            int r = make_cmp(PyTuple_GET_ITEM(o, 0), eq, PyTuple_GET_ITEM(o, 1), &nd->opts[j]);
            Py_DECREF(eq);
            if (r < 0) return -1;
        }
        return 0;
    }
    }
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "splscan: malformed predicate node");
    return -1;
}

/* compile(fields, nodes) -> predicate: fields [(kind, name bytes)], nodes [tuple] in post-order (children
 * before parents, referenced by index); the last node is the root. */
static PyObject *compile(PyObject *self, PyObject *args) {
    PyObject *fields, *nodes;
    if (!PyArg_ParseTuple(args, "O!O!:compile", &PyList_Type, &fields, &PyList_Type, &nodes)) return NULL;
    Py_ssize_t nf = PyList_GET_SIZE(fields), nn = PyList_GET_SIZE(nodes);
    if (nf > MAX_FIELDS || nn < 1 || nn > MAX_NODES) {
        PyErr_SetString(PyExc_ValueError, "splscan: predicate too large");
        return NULL;
    }
    Pred *pr = PyMem_Calloc(1, sizeof(Pred));
    if (pr == NULL) return PyErr_NoMemory();
    pr->nodes = PyMem_Calloc((size_t)nn, sizeof(Node));
    if (pr->nodes == NULL) {
        PyMem_Free(pr);
        return PyErr_NoMemory();
    }
    pr->nnodes = (int)nn;
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *t = PyList_GET_ITEM(fields, f);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2) {
            PyErr_SetString(PyExc_ValueError, "splscan: malformed field");
            goto fail;
        }
        if (small_int(PyTuple_GET_ITEM(t, 0), K_CONTENT, K_TAG, &pr->fields[f].kind) < 0) goto fail;
        if (copy_bytes(PyTuple_GET_ITEM(t, 1), &pr->fields[f].name, &pr->fields[f].len) < 0) goto fail;
        pr->nfields = (int)f + 1;
        if (pr->fields[f].kind == K_TAG && (pr->fields[f].len < 8 || memcmp(pr->fields[f].name, "__tag__:", 8))) {
            PyErr_SetString(PyExc_ValueError, "splscan: a tag field's name starts with __tag__:");
            goto fail;
        }
        if (pr->fields[f].kind >= K_TOPIC) pr->need_header = 1;
        if (pr->fields[f].kind == K_TAG) pr->has_tags = 1;
    }
    for (Py_ssize_t i = 0; i < nn; i++)
        if (make_node(pr, (int)i, PyList_GET_ITEM(nodes, i)) < 0) goto fail;
    pr->root = (int)nn - 1;
    PyObject *cap = PyCapsule_New(pr, CAPSULE_NAME, capsule_free);
    if (cap == NULL) goto fail;
    return cap;
fail:
    pred_free(pr);
    return NULL;
}

/* ------------------------------------------------------------------ scanning groups */

/* read_pair with the common shape inline: Key then Value, each with a one-byte length, and nothing else (what
every SDK writes). Anything else takes the general walk. */
static inline int content_kv(Cur m, Cur *key, Cur *value) {
    const uint8_t *p = m.p, *e = m.end;
    if (e - p >= 4 && p[0] == 0x0A && p[1] < 0x80 && e - p - 2 >= (Py_ssize_t)p[1] + 2) {
        const uint8_t *ke = p + 2 + p[1];
        if (ke[0] == 0x12 && ke[1] < 0x80 && ke + 2 + ke[1] == e) {
            key->p = p + 2;
            key->end = ke;
            value->p = ke + 2;
            value->end = e;
            return 0;
        }
    }
    return read_pair(m, key, value);
}

typedef struct {
    Py_ssize_t *drop; /* pairs (start, end) of dropped Logs fields, offsets in the group */
    Py_ssize_t ndrop, cap;
} Drops;

static int add_drop(Drops *d, Py_ssize_t start, Py_ssize_t end) {
    if (d->ndrop > 0 && d->drop[2 * d->ndrop - 1] == start) { /* adjacent: extend the previous run */
        d->drop[2 * d->ndrop - 1] = end;
        return 0;
    }
    if (d->ndrop == d->cap) {
        Py_ssize_t cap = d->cap ? d->cap * 2 : 256;
        Py_ssize_t *p = PyMem_RawRealloc(d->drop, (size_t)cap * 2 * sizeof(Py_ssize_t)); /* no GIL here */
        if (p == NULL) return -1;
        d->drop = p;
        d->cap = cap;
    }
    d->drop[2 * d->ndrop] = start;
    d->drop[2 * d->ndrop + 1] = end;
    d->ndrop++;
    return 0;
}

enum { G_NONE = 0, G_ALL = 1, G_SOME = 2, G_FALLBACK = 3, G_NOMEM = 4, G_ERROR = 5 };

/* Evaluates the predicate over every log of one group; G_SOME leaves the dropped Logs fields in *drops. Any
 * malformed input or a value only Python can judge: G_FALLBACK; a Python error from an N_CALL: G_ERROR. Runs
 * without the GIL unless the predicate has an N_CALL: no other Python API here. */
static int scan_group(const Pred *pr, const uint8_t *base, Py_ssize_t len, Val *vals, Drops *drops,
                      CallMemo *memo) {
    Cur g = {base, base + len};
    Cur topic = {base, base}, source = {base, base};
    Cur tagv[MAX_FIELDS];
    int tagfound[MAX_FIELDS];
    drops->ndrop = 0;
    if (pr->has_tags) memset(tagfound, 0, sizeof(tagfound));
    if (pr->need_header) {
        Cur h = g;
        while (h.p < h.end) {
            uint32_t f;
            int wt;
            Cur sub;
            if (read_key(&h, &f, &wt) < 0) goto malformed;
            if (wt == 2) {
                if (read_len(&h, &sub) < 0) goto malformed;
                if (f == 3) topic = sub;
                else if (f == 4) source = sub;
                else if (f == 6 && pr->has_tags) { /* the decoder sets __tag__:<key> for each, the last wins */
                    Cur k, v;
                    if (read_pair(sub, &k, &v) < 0) goto malformed;
                    Py_ssize_t kn = k.end - k.p;
                    if (text_ok(k.p, kn) == R_FALLBACK) return G_FALLBACK; /* its name would be b'...' */
                    for (int j = 0; j < pr->nfields; j++) {
                        const Field *fd = &pr->fields[j];
                        if (fd->kind == K_TAG && fd->len - 8 == kn && memcmp(fd->name + 8, k.p, (size_t)kn) == 0) {
                            tagv[j] = v;
                            tagfound[j] = 1;
                        }
                    }
                }
            } else if (skip(&h, wt) < 0) {
                goto malformed;
            }
        }
    }
    Py_ssize_t nlogs = 0, kept = 0;
    while (g.p < g.end) {
        const uint8_t *at = g.p;
        uint32_t f;
        int wt;
        Cur sub;
        if (read_key(&g, &f, &wt) < 0) goto malformed;
        if (f == 1 && wt == 2) {
            if (read_len(&g, &sub) < 0) goto malformed;
            for (int j = 0; j < pr->nfields; j++) vals[j].present = 0;
            uint64_t time = 0;
            while (sub.p < sub.end) {
                uint32_t lf;
                int lwt;
                if (read_key(&sub, &lf, &lwt) < 0) goto malformed;
                if (lf == 1 && lwt == 0) {
                    if (read_varint(&sub, &time) < 0) goto malformed;
                } else if (lf == 2 && lwt == 2) {
                    Cur content, k, v;
                    if (read_len(&sub, &content) < 0 || content_kv(content, &k, &v) < 0) goto malformed;
                    Py_ssize_t kn = k.end - k.p;
                    for (int j = 0; j < pr->nfields; j++) {
                        const Field *fd = &pr->fields[j];
                        if (fd->len == kn && (fd->kind == K_CONTENT || fd->kind == K_TAG) &&
                            (kn == 0 || fd->name[0] == (char)k.p[0]) &&
                            memcmp(fd->name, k.p, (size_t)kn) == 0) {
                            vals[j].p = v.p;
                            vals[j].n = v.end - v.p;
                            vals[j].present = 1;
                            break;
                        }
                    }
                } else if (skip(&sub, lwt) < 0) {
                    goto malformed;
                }
            }
            for (int j = 0; j < pr->nfields; j++) {
                switch (pr->fields[j].kind) {
                case K_TIME:
                    vals[j].present = 1;
                    vals[j].ival = (int64_t)(uint32_t)time;
                    break;
                case K_TOPIC:
                    vals[j].present = 1;
                    vals[j].p = topic.p;
                    vals[j].n = topic.end - topic.p;
                    break;
                case K_SOURCE:
                    vals[j].present = 1;
                    vals[j].p = source.p;
                    vals[j].n = source.end - source.p;
                    break;
                case K_TAG:
                    if (tagfound[j]) { /* the group's tag overrides a content of the same name */
                        vals[j].present = 1;
                        vals[j].p = tagv[j].p;
                        vals[j].n = tagv[j].end - tagv[j].p;
                    }
                    break;
                }
            }
            int r = eval(pr, pr->root, vals, memo);
            if (r == R_FALLBACK) return G_FALLBACK;
            if (r == R_ERROR) return G_ERROR;
            nlogs++;
            if (r == R_TRUE) kept++;
            else if (add_drop(drops, at - base, g.p - base) < 0) return G_NOMEM;
        } else if (wt == 2 && f == 6) { /* a LogTag: checked as the decoder checks it */
            Cur k, v;
            if (read_len(&g, &sub) < 0 || read_pair(sub, &k, &v) < 0) goto malformed;
        } else if (skip(&g, wt) < 0) {
            goto malformed;
        }
    }
    if (kept == 0) return G_NONE;
    return kept == nlogs ? G_ALL : G_SOME;
malformed:
    return G_FALLBACK;
}

typedef struct {
    PyObject *bytes;
    Py_ssize_t len, cap;
} Out;

static int out_reserve(Out *o, Py_ssize_t need) {
    if (o->len + need <= o->cap) return 0;
    Py_ssize_t cap = o->cap * 2 > o->len + need ? o->cap * 2 : o->len + need + 1024;
    if (_PyBytes_Resize(&o->bytes, cap) < 0) return -1;
    o->cap = cap;
    return 0;
}

static inline uint8_t *out_ptr(Out *o) { return (uint8_t *)PyBytes_AS_STRING(o->bytes) + o->len; }

static int out_header(Out *o, Py_ssize_t glen) {
    if (out_reserve(o, 11 + glen) < 0) return -1;
    uint8_t *p = out_ptr(o);
    *p++ = 0x0A;
    uint64_t v = (uint64_t)glen;
    while (v > 0x7F) {
        *p++ = (uint8_t)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    o->len = (Py_ssize_t)(p - (uint8_t *)PyBytes_AS_STRING(o->bytes));
    return 0;
}

static int out_copy(Out *o, const uint8_t *p, Py_ssize_t n) {
    if (out_reserve(o, n) < 0) return -1;
    memcpy(out_ptr(o), p, (size_t)n);
    o->len += n;
    return 0;
}

/* where(pred, body, needles, fallback) -> (LogGroupList bytes, groups) | None
 * body: stored groups framed as a LogGroupList; needles: bytes every group must contain to be looked at;
 * fallback(group: bytes) -> bytes | None answers a group this file leaves to Python. None when the framing
 * itself is not what the store writes (the caller runs the Python path over the body). */
static PyObject *where(PyObject *self, PyObject *args) {
    PyObject *cap, *body, *needles, *fallback;
    if (!PyArg_ParseTuple(args, "OOO!O:where", &cap, &body, &PyTuple_Type, &needles, &fallback)) return NULL;
    Pred *pr = PyCapsule_GetPointer(cap, CAPSULE_NAME);
    if (pr == NULL) return NULL;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(needles); k++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(needles, k))) {
            PyErr_SetString(PyExc_TypeError, "where: needles must be bytes");
            return NULL;
        }
    Py_buffer view;
    if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0) return NULL;
    Val vals[MAX_FIELDS];
    Drops drops = {NULL, 0, 0};
    CallMemo *memo = NULL;
    if (pr->has_calls) {
        memo = PyMem_Calloc((size_t)pr->has_calls * (MEMO_SLOTS + 1), sizeof(CallMemo));
        if (memo == NULL) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
    }
    Out o = {NULL, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t groups = 0;
    o.cap = view.len > 0 ? view.len : 1;
    o.bytes = PyBytes_FromStringAndSize(NULL, o.cap);
    if (o.bytes == NULL) goto done;
    Cur c = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    while (c.p < c.end) {
        uint32_t f;
        int wt;
        Cur g;
        if (read_key(&c, &f, &wt) < 0) goto framing;
        if (wt != 2) {
            if (skip(&c, wt) < 0) goto framing;
            continue;
        }
        if (read_len(&c, &g) < 0) goto framing;
        if (f != 1) continue;
        Py_ssize_t glen = g.end - g.p;
        int skip_group = 0;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(needles) && !skip_group; k++) {
            PyObject *nb = PyTuple_GET_ITEM(needles, k);
            Py_ssize_t nl = PyBytes_GET_SIZE(nb);
            if (nl && memmem(g.p, (size_t)glen, PyBytes_AS_STRING(nb), (size_t)nl) == NULL) skip_group = 1;
        }
        if (skip_group) continue;
        int r;
        if (glen >= GIL_FREE_BYTES && !pr->has_calls) { /* other threads (the event loop, pulls) run meanwhile */
            Py_BEGIN_ALLOW_THREADS
            r = scan_group(pr, g.p, glen, vals, &drops, memo);
            Py_END_ALLOW_THREADS
        } else {
            r = scan_group(pr, g.p, glen, vals, &drops, memo);
        }
        if (r == G_NOMEM) {
            PyErr_NoMemory();
            goto done;
        }
        if (r == G_ERROR) goto done;
        if (r == G_NONE) continue;
        if (r == G_ALL) {
            if (out_header(&o, glen) < 0 || out_copy(&o, g.p, glen) < 0) goto done;
            groups++;
        } else if (r == G_SOME) {
            Py_ssize_t dropped = 0;
            for (Py_ssize_t k = 0; k < drops.ndrop; k++) dropped += drops.drop[2 * k + 1] - drops.drop[2 * k];
            if (out_header(&o, glen - dropped) < 0) goto done;
            Py_ssize_t at = 0;
            for (Py_ssize_t k = 0; k < drops.ndrop; k++) {
                if (out_copy(&o, g.p + at, drops.drop[2 * k] - at) < 0) goto done;
                at = drops.drop[2 * k + 1];
            }
            if (out_copy(&o, g.p + at, glen - at) < 0) goto done;
            groups++;
        } else {
            PyObject *gb = PyBytes_FromStringAndSize((const char *)g.p, glen);
            if (gb == NULL) goto done;
            PyObject *res = PyObject_CallOneArg(fallback, gb);
            Py_DECREF(gb);
            if (res == NULL) goto done;
            if (res != Py_None) {
                char *rp;
                Py_ssize_t rn;
                if (PyBytes_AsStringAndSize(res, &rp, &rn) < 0 || out_header(&o, rn) < 0 ||
                    out_copy(&o, (const uint8_t *)rp, rn) < 0) {
                    Py_DECREF(res);
                    goto done;
                }
                groups++;
            }
            Py_DECREF(res);
        }
    }
    if (_PyBytes_Resize(&o.bytes, o.len) < 0) goto done;
    result = Py_BuildValue("(On)", o.bytes, groups);
    goto done;
framing:
    PyErr_Clear();
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(o.bytes);
    PyMem_RawFree(drops.drop);
    PyMem_Free(memo);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"compile", compile, METH_VARARGS,
     "compile(fields, nodes) -> predicate: a where clause in the node form hub/query/spl.py builds; "
     "ValueError/TypeError/OverflowError when it is not one this module evaluates."},
    {"where", where, METH_VARARGS,
     "where(predicate, body, needles, fallback) -> (LogGroupList bytes, groups) | None: the groups of a framed "
     "body with only the logs the predicate keeps, as stored; fallback(group) answers groups left to Python."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_splscan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__splscan(void) { return PyModule_Create(&module); }
