/*
 * sluice.client._sdklogs: one SLS LogGroup (protobuf bytes) -> the SDK-shaped log objects an
 * aliyun-log-python-sdk processor reads: `Logs`, a sequence of Log (.Time, .Time_ns, .Contents), each Content
 * (.Key, .Value).
 *
 * Why C: programs written for the SDK walk `log_group.Logs[i].Contents[j].Key/.Value`. On the protobuf runtime
 * each of those reads builds a wrapper object or a new str; that walk was the whole cost of seed 002's handler
 * (bench/consumer.py (b)). Here each Content is a small C object whose .Key/.Value are plain slot reads, the
 * key strings of the previous log are reused (logs of a group nearly always share their keys, in order), and
 * a Log is built only when it is read: a `for log in group.Logs` loop refills the few objects the handler has
 * let go of instead of building ~10 objects per log for the whole pull up front (which kept ~70 MB more alive
 * per consumer and freed them cold on the event loop's thread: ~25% of the compat consumer's CPU, bench (b)).
 *
 * The objects are read-only: a program that edits a log through them would otherwise see its edit silently
 * dropped when the group is forwarded (SerializeToString returns the received bytes). Setting an attribute
 * raises AttributeError saying so; the compat layer's LogGroup parses the protobuf message for edits.
 *
 * Values that are not valid UTF-8 come out as bytes (as the protobuf runtime gives proto2 strings it cannot
 * decode). Malformed input raises ValueError when the Logs is made (the whole group is checked then); nothing
 * reads past the buffer. Missing required fields take their defaults (0, ""), as the runtime does.
 *
 * Schema (proto2, SLS's): LogGroup{1: Logs, ...}, Log{1: Time uint32, 2: Contents, 4: Time_ns fixed32},
 * Content{1: Key, 2: Value}.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#include "../wire/_pbread.h"


/* Assigning any attribute: the objects are views of the received bytes (see the top of the file). */
static int read_only(PyObject *self, PyObject *name, PyObject *value) {
    PyErr_Format(PyExc_AttributeError,
                 "%s objects of a sluice compat consumer are read-only (they are views of the received bytes); "
                 "to change a log, build a new LogGroup, or change the group's Topic/Source (which works)",
                 Py_TYPE(self)->tp_name);
    return -1;
}

/* The attributes are object slots (PyMemberDef T_OBJECT_EX), not getters: CPython specializes a read of such
 * a slot into an inline load (LOAD_ATTR_SLOT), which is what `content.Key` in a handler's inner loop costs. */

/* ------------------------------------------------------------------ Content (also used for LogTag) */
typedef struct {
    PyObject_HEAD
    PyObject *key;
    PyObject *value;
} ContentObject;

static PyTypeObject ContentType;

static void content_dealloc(ContentObject *self) {
    Py_XDECREF(self->key);
    Py_XDECREF(self->value);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *content_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *names[] = {"Key", "Value", NULL};
    PyObject *key = NULL, *value = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:Content", names, &key, &value)) return NULL;
    ContentObject *self = (ContentObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->key = key ? Py_NewRef(key) : PyUnicode_FromStringAndSize("", 0);
    self->value = value ? Py_NewRef(value) : PyUnicode_FromStringAndSize("", 0);
    if (self->key == NULL || self->value == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *content_repr(ContentObject *self) {
    return PyUnicode_FromFormat("Content(Key=%R, Value=%R)", self->key, self->value);
}

static PyObject *content_richcompare(PyObject *a, PyObject *b, int op) {
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(b, &ContentType)) Py_RETURN_NOTIMPLEMENTED;
    ContentObject *x = (ContentObject *)a, *y = (ContentObject *)b;
    int eq = PyObject_RichCompareBool(x->key, y->key, Py_EQ);
    if (eq < 0) return NULL;
    if (eq) {
        eq = PyObject_RichCompareBool(x->value, y->value, Py_EQ);
        if (eq < 0) return NULL;
    }
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyMemberDef content_members[] = {
    {"Key", T_OBJECT_EX, offsetof(ContentObject, key), READONLY, "the field's (or tag's) key"},
    {"Value", T_OBJECT_EX, offsetof(ContentObject, value), READONLY, "the field's (or tag's) value"},
    {NULL},
};

static PyTypeObject ContentType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sluice.client._sdklogs.Content",
    .tp_basicsize = sizeof(ContentObject),
    .tp_dealloc = (destructor)content_dealloc,
    .tp_repr = (reprfunc)content_repr,
    .tp_setattro = read_only,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One Content (or LogTag) of a received log: .Key, .Value (read-only).",
    .tp_richcompare = content_richcompare,
    .tp_members = content_members,
    .tp_new = content_new,
};

/* ------------------------------------------------------------------ Log */
typedef struct {
    PyObject_HEAD
    PyObject *time;     /* int */
    PyObject *time_ns;  /* int, 0 when absent */
    PyObject *contents; /* tuple of Content: immutable, exactly sized */
    int has_time_ns;
} LogObject;

static PyTypeObject LogType;

static void log_dealloc(LogObject *self) {
    Py_XDECREF(self->time);
    Py_XDECREF(self->time_ns);
    Py_XDECREF(self->contents);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *log_repr(LogObject *self) {
    return PyUnicode_FromFormat("Log(Time=%R, Contents=%R)", self->time, self->contents);
}

/* HasField("Time_ns") as the protobuf message answers it (the SDK's own code asks before reading Time_ns). */
static PyObject *log_hasfield(LogObject *self, PyObject *name) {
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "HasField() takes a field name");
        return NULL;
    }
    if (PyUnicode_CompareWithASCIIString(name, "Time_ns") == 0) return PyBool_FromLong(self->has_time_ns);
    if (PyUnicode_CompareWithASCIIString(name, "Time") == 0) Py_RETURN_TRUE;
    PyErr_Format(PyExc_ValueError, "Protocol message Log has no singular \"%U\" field.", name);
    return NULL;
}

static PyMemberDef log_members[] = {
    {"Time", T_OBJECT_EX, offsetof(LogObject, time), READONLY, "the log's time, unix seconds"},
    {"Time_ns", T_OBJECT_EX, offsetof(LogObject, time_ns), READONLY, "the nanosecond part (0 when absent)"},
    {"Contents", T_OBJECT_EX, offsetof(LogObject, contents), READONLY, "the log's fields: a tuple of Content"},
    {NULL},
};

static PyMethodDef log_methods[] = {
    {"HasField", (PyCFunction)log_hasfield, METH_O, "HasField(name): whether Time_ns was sent."},
    {NULL},
};

static PyTypeObject LogType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sluice.client._sdklogs.Log",
    .tp_basicsize = sizeof(LogObject),
    .tp_dealloc = (destructor)log_dealloc,
    .tp_repr = (reprfunc)log_repr,
    .tp_setattro = read_only,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One received log: .Time, .Time_ns, .Contents (read-only).",
    .tp_members = log_members,
    .tp_methods = log_methods,
};

/* ------------------------------------------------------------------ decoding */

/* A log is read in two steps: first its fields are located (no object made: this also validates it), then
 * the objects are built. Knowing the number of Contents first lets a Log be refilled in place (see Logs). */
typedef struct {
    const uint8_t *kp, *vp;
    Py_ssize_t kn, vn;
} Pair;

#define LOCAL_PAIRS 32

typedef struct {
    uint32_t time, time_ns;
    int has_ns;
    Pair local[LOCAL_PAIRS];
    Pair *pairs;
    Py_ssize_t n, cap;
} LogScan;

static void scan_init(LogScan *s) {
    s->pairs = s->local;
    s->cap = LOCAL_PAIRS;
}

static void scan_free(LogScan *s) {
    if (s->pairs != s->local) PyMem_Free(s->pairs);
    s->pairs = s->local;
    s->cap = LOCAL_PAIRS;
}

/* Locates Time, Time_ns and each Content's Key/Value of one serialized Log (last occurrence of a Key or
 * Value wins, absent = ""; unknown fields skipped). -1 with ValueError (or MemoryError) set. */
static int scan_log(Cur m, LogScan *s) {
    uint64_t time = 0;
    s->n = 0;
    s->time_ns = 0;
    s->has_ns = 0;
    while (m.p < m.end) {
        uint32_t f;
        int wt;
        if (read_key(&m, &f, &wt) < 0) return -1;
        if (f == 2 && wt == 2) {
            Cur content, k, v;
            if (read_len(&m, &content) < 0) return -1;
            k.p = k.end = v.p = v.end = content.p;
            while (content.p < content.end) {
                uint32_t cf;
                int cwt;
                if (read_key(&content, &cf, &cwt) < 0) return -1;
                if (cwt == 2 && (cf == 1 || cf == 2)) {
                    if (read_len(&content, cf == 1 ? &k : &v) < 0) return -1;
                } else if (skip(&content, cwt) < 0) {
                    return -1;
                }
            }
            if (s->n == s->cap) {
                Py_ssize_t cap = s->cap * 2;
                Pair *pairs = s->pairs == s->local ? PyMem_Malloc(sizeof(Pair) * cap)
                                                   : PyMem_Realloc(s->pairs, sizeof(Pair) * cap);
                if (pairs == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
                if (s->pairs == s->local) memcpy(pairs, s->local, sizeof(s->local));
                s->pairs = pairs;
                s->cap = cap;
            }
            Pair *pr = &s->pairs[s->n++];
            pr->kp = k.p;
            pr->kn = k.end - k.p;
            pr->vp = v.p;
            pr->vn = v.end - v.p;
        } else if (f == 1 && wt == 0) {
            if (read_varint(&m, &time) < 0) return -1;
        } else if (f == 4 && wt == 5) {
            if (m.end - m.p < 4) return bad("truncated fixed32");
            s->time_ns = (uint32_t)m.p[0] | ((uint32_t)m.p[1] << 8) | ((uint32_t)m.p[2] << 16) |
                         ((uint32_t)m.p[3] << 24);
            s->has_ns = 1;
            m.p += 4;
        } else if (skip(&m, wt) < 0) {
            return -1;
        }
    }
    s->time = (uint32_t)time; /* a uint32 field: the runtime keeps the low 32 bits too */
    return 0;
}

/* Strings shared between the logs of a group: the i-th key, and the i-th value, of the previous log are
 * reused when the bytes match (keys nearly always do; values often do: method, status, host...), and the
 * previous Time. Owned by an iterator (or a Logs for indexing); pointers into that Logs' buffer. */
#define VALUE_CACHE 64

typedef struct {
    CachedKey keys[KEY_CACHE];
    CachedKey values[VALUE_CACHE];
    PyObject *time_obj;
    uint32_t time;
} Caches;

static void caches_clear(Caches *c) {
    for (int i = 0; i < KEY_CACHE; i++) Py_CLEAR(c->keys[i].str);
    for (int i = 0; i < VALUE_CACHE; i++) Py_CLEAR(c->values[i].str);
    Py_CLEAR(c->time_obj);
}

static inline PyObject *cached_value(Caches *c, Py_ssize_t i, const uint8_t *p, Py_ssize_t n) {
    return cached_text(c->values, VALUE_CACHE, i, p, n);
}

static PyObject *new_content(PyObject *key, PyObject *value) { /* steals both */
    ContentObject *c = PyObject_New(ContentObject, &ContentType);
    if (c == NULL) {
        Py_DECREF(key);
        Py_DECREF(value);
        return NULL;
    }
    c->key = key;
    c->value = value;
    return (PyObject *)c;
}

/* Where one log's fields lie, kept by Logs from its check at creation (offsets into the group's bytes), so
 * reading a log does not parse it a second time. */
typedef struct {
    uint32_t k, kn, v, vn;
} Span4;

typedef struct {
    uint32_t first, n; /* its Contents: spans[first .. first + n) */
    uint32_t time, time_ns;
    uint32_t has_ns;
} LogMeta;

/* Builds the Log of `lm`. `log` is NULL (a new Log is made) or a Log nobody else holds (its reference is
 * stolen): it is refilled, and so are its Contents tuple and each Content in it that nobody else holds
 * either. Objects nobody else can reach cannot be told apart from new ones; refilling them spares most of
 * the allocations of a `for log in group.Logs` loop (CPython's dict-items and zip iterators do the same
 * with their result tuples). New reference, or NULL with an error set. */
static PyObject *build_log(LogObject *log, const LogMeta *lm, const Span4 *spans, const uint8_t *base, Caches *c) {
    PyObject *time, *contents = NULL;
    Py_ssize_t n = lm->n;
    if (c->time_obj != NULL && c->time == lm->time) {
        time = Py_NewRef(c->time_obj);
    } else {
        time = PyLong_FromUnsignedLong(lm->time);
        if (time == NULL) goto fail;
        Py_XSETREF(c->time_obj, Py_NewRef(time));
        c->time = lm->time;
    }
    if (log != NULL && log->contents != NULL && Py_REFCNT(log->contents) == 1 &&
        PyTuple_GET_SIZE(log->contents) == n) {
        contents = log->contents;
        log->contents = NULL;
    } else {
        contents = PyTuple_New(n);
        if (contents == NULL) goto fail;
        /* Content objects hold only str/bytes and are not GC types, so the tuple can never be part of a
         * cycle: leave it out of the collector */
        PyObject_GC_UnTrack(contents);
    }
    spans += lm->first;
    for (Py_ssize_t j = 0; j < n; j++) {
        const Span4 *sp = &spans[j];
        PyObject *key = cached_key(c->keys, j, base + sp->k, sp->kn);
        if (key == NULL) goto fail;
        PyObject *value = cached_value(c, j, base + sp->v, sp->vn);
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        PyObject *old = PyTuple_GET_ITEM(contents, j);
        if (old != NULL && Py_REFCNT(old) == 1 && Py_IS_TYPE(old, &ContentType)) {
            ContentObject *co = (ContentObject *)old;
            Py_SETREF(co->key, key);
            Py_SETREF(co->value, value);
        } else {
            PyObject *fresh = new_content(key, value);
            if (fresh == NULL) goto fail;
            PyTuple_SET_ITEM(contents, j, fresh);
            Py_XDECREF(old);
        }
    }
    if (log == NULL) {
        log = PyObject_New(LogObject, &LogType);
        if (log == NULL) goto fail;
        log->time = log->time_ns = log->contents = NULL;
    }
    Py_XSETREF(log->time, time);
    Py_XSETREF(log->time_ns, PyLong_FromUnsignedLong(lm->time_ns));
    Py_XSETREF(log->contents, contents);
    log->has_time_ns = (int)lm->has_ns;
    if (log->time_ns == NULL) {
        Py_DECREF(log);
        return NULL;
    }
    return (PyObject *)log;
fail:
    Py_XDECREF(time);
    Py_XDECREF(contents);
    Py_XDECREF(log);
    return NULL;
}

/* ------------------------------------------------------------------ Logs: a group's logs, decoded on use */
/* What `log_group.Logs` is: a read-only sequence over the received bytes. Creating it locates each log and
 * checks the whole group's structure (so a malformed group fails here, not halfway through a handler); a
 * Log is built when it is read: by index (a new Log each time), or by iteration, which refills the Log of
 * two steps back when the handler has let go of it. A loop over a group thus touches a few objects that stay
 * in cache instead of allocating (and later freeing, cold) ~10 objects per log; a handler that keeps the
 * logs (list(group.Logs), appending them) gets distinct objects, as the refill happens only to objects
 * nobody holds. */
typedef struct {
    PyObject_HEAD
    Py_buffer view; /* view.obj: the group's bytes (a memoryview of the pull, or bytes) */
    Py_ssize_t n;
    LogMeta *meta;  /* one per log */
    Span4 *spans;   /* every log's Contents, in order */
    Caches *caches; /* for indexing; made on first use */
} LogsObject;

static PyTypeObject LogsType, LogsIterType;

static void logs_dealloc(LogsObject *self) {
    if (self->caches != NULL) {
        caches_clear(self->caches);
        PyMem_Free(self->caches);
    }
    PyMem_Free(self->meta);
    PyMem_Free(self->spans);
    if (self->view.obj != NULL) PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *logs_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *buf;
    if (kw != NULL && PyDict_GET_SIZE(kw) != 0) {
        PyErr_SetString(PyExc_TypeError, "Logs() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O:Logs", &buf)) return NULL;
    LogsObject *self = (LogsObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    if (PyObject_GetBuffer(buf, &self->view, PyBUF_SIMPLE) < 0) {
        self->view.obj = NULL;
        Py_DECREF(self);
        return NULL;
    }
    if ((uint64_t)self->view.len > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "malformed LogGroup: 4 GiB or more");
        Py_DECREF(self);
        return NULL;
    }
    Cur g = {(const uint8_t *)self->view.buf, (const uint8_t *)self->view.buf + self->view.len};
    const uint8_t *base = g.p;
    Py_ssize_t cap = 0, n_spans = 0, cap_spans = 0;
    LogScan s;
    scan_init(&s);
    while (g.p < g.end) {
        uint32_t f;
        int wt;
        Cur sub;
        if (read_key(&g, &f, &wt) < 0) goto fail;
        if (f == 1 && wt == 2) {
            if (read_len(&g, &sub) < 0 || scan_log(sub, &s) < 0) goto fail;
            if (self->n == cap) {
                cap = cap ? cap * 2 : 256;
                LogMeta *meta = PyMem_Realloc(self->meta, sizeof(LogMeta) * cap);
                if (meta == NULL) {
                    PyErr_NoMemory();
                    goto fail;
                }
                self->meta = meta;
            }
            if (n_spans + s.n > cap_spans) {
                while (n_spans + s.n > cap_spans) cap_spans = cap_spans ? cap_spans * 2 : 2048;
                Span4 *spans = PyMem_Realloc(self->spans, sizeof(Span4) * cap_spans);
                if (spans == NULL) {
                    PyErr_NoMemory();
                    goto fail;
                }
                self->spans = spans;
            }
            LogMeta *lm = &self->meta[self->n++];
            lm->first = (uint32_t)n_spans;
            lm->n = (uint32_t)s.n;
            lm->time = s.time;
            lm->time_ns = s.time_ns;
            lm->has_ns = (uint32_t)s.has_ns;
            for (Py_ssize_t j = 0; j < s.n; j++) {
                Span4 *sp = &self->spans[n_spans++];
                sp->k = (uint32_t)(s.pairs[j].kp - base);
                sp->kn = (uint32_t)s.pairs[j].kn;
                sp->v = (uint32_t)(s.pairs[j].vp - base);
                sp->vn = (uint32_t)s.pairs[j].vn;
            }
        } else if (skip(&g, wt) < 0) {
            goto fail;
        }
    }
    scan_free(&s);
    return (PyObject *)self;
fail:
    scan_free(&s);
    Py_DECREF(self);
    return NULL;
}

static Py_ssize_t logs_len(LogsObject *self) { return self->n; }

/* The i-th log (0 <= i < n), with `caches`; `reuse` as build_log's. */
static inline PyObject *logs_build(LogsObject *self, Py_ssize_t i, LogObject *reuse, Caches *c) {
    return build_log(reuse, &self->meta[i], self->spans, (const uint8_t *)self->view.buf, c);
}

static PyObject *logs_item(LogsObject *self, Py_ssize_t i) {
    if (i < 0 || i >= self->n) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return NULL;
    }
    if (self->caches == NULL) {
        self->caches = PyMem_Calloc(1, sizeof(Caches));
        if (self->caches == NULL) return PyErr_NoMemory();
    }
    return logs_build(self, i, NULL, self->caches);
}

static PyObject *logs_subscript(LogsObject *self, PyObject *key) {
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return NULL;
        if (i < 0) i += self->n;
        return logs_item(self, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return NULL;
        Py_ssize_t len = PySlice_AdjustIndices(self->n, &start, &stop, step);
        PyObject *out = PyList_New(len);
        if (out == NULL) return NULL;
        for (Py_ssize_t k = 0, i = start; k < len; k++, i += step) {
            PyObject *log = logs_item(self, i);
            if (log == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, k, log);
        }
        return out;
    }
    return PyErr_Format(PyExc_TypeError, "Logs indices must be integers or slices, not %.200s",
                        Py_TYPE(key)->tp_name);
}

static PyObject *logs_repr(LogsObject *self) {
    PyObject *list = PySequence_List((PyObject *)self);
    if (list == NULL) return NULL;
    PyObject *r = PyObject_Repr(list);
    Py_DECREF(list);
    return r;
}

/* ------------------------------------------------------------------ iterating Logs */
typedef struct {
    PyObject_HEAD
    LogsObject *logs; /* NULL once exhausted */
    Py_ssize_t i;
    LogObject *spare[2]; /* the last two Logs handed out: refilled once nobody else holds them */
    Caches caches;
} LogsIterObject;

static void logsiter_release(LogsIterObject *it) {
    Py_CLEAR(it->logs);
    Py_CLEAR(it->spare[0]);
    Py_CLEAR(it->spare[1]);
    caches_clear(&it->caches);
}

static void logsiter_dealloc(LogsIterObject *it) {
    logsiter_release(it);
    Py_TYPE(it)->tp_free((PyObject *)it);
}

static PyObject *logs_iter(LogsObject *self) {
    LogsIterObject *it = (LogsIterObject *)LogsIterType.tp_alloc(&LogsIterType, 0); /* zeroed */
    if (it == NULL) return NULL;
    it->logs = (LogsObject *)Py_NewRef(self);
    return (PyObject *)it;
}

static PyObject *logsiter_next(LogsIterObject *it) {
    if (it->logs == NULL) return NULL;
    if (it->i >= it->logs->n) {
        logsiter_release(it);
        return NULL;
    }
    /* a spare that only this iterator holds is taken out of its slot first: nothing else can reach it */
    LogObject *reuse = NULL;
    int slot = -1;
    for (int k = 0; k < 2; k++) {
        if (it->spare[k] != NULL && Py_REFCNT(it->spare[k]) == 1) {
            reuse = it->spare[k];
            it->spare[k] = NULL;
            slot = k;
            break;
        }
    }
    /* held across the build: an allocation in it can run a finalizer (the collector) that exhausts this same
       iterator, which lets go of the Logs (and its buffer) while the build still reads them */
    LogsObject *logs = (LogsObject *)Py_NewRef(it->logs);
    PyObject *log = logs_build(logs, it->i, reuse, &it->caches);
    Py_DECREF(logs);
    if (log == NULL) return NULL;
    it->i++;
    if (slot < 0) slot = it->spare[0] == NULL ? 0 : it->spare[1] == NULL ? 1 : (int)(it->i & 1);
    Py_XSETREF(it->spare[slot], (LogObject *)Py_NewRef(log));
    return log;
}

static PyObject *logsiter_length_hint(LogsIterObject *it, PyObject *unused) {
    return PyLong_FromSsize_t(it->logs == NULL ? 0 : it->logs->n - it->i);
}

static PyMethodDef logsiter_methods[] = {
    {"__length_hint__", (PyCFunction)logsiter_length_hint, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject LogsIterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sluice.client._sdklogs.LogsIterator",
    .tp_basicsize = sizeof(LogsIterObject),
    .tp_dealloc = (destructor)logsiter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)logsiter_next,
    .tp_methods = logsiter_methods,
};

static PySequenceMethods logs_as_sequence = {
    .sq_length = (lenfunc)logs_len,
    .sq_item = (ssizeargfunc)logs_item,
};

static PyMappingMethods logs_as_mapping = {
    .mp_length = (lenfunc)logs_len,
    .mp_subscript = (binaryfunc)logs_subscript,
};

static PyTypeObject LogsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sluice.client._sdklogs.Logs",
    .tp_basicsize = sizeof(LogsObject),
    .tp_dealloc = (destructor)logs_dealloc,
    .tp_repr = (reprfunc)logs_repr,
    .tp_as_sequence = &logs_as_sequence,
    .tp_as_mapping = &logs_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Logs(buf): the logs of one serialized LogGroup, a read-only sequence of Log decoded when read "
              "(len, indexing, slices, iteration); ValueError if the group is malformed.",
    .tp_iter = (getiterfunc)logs_iter,
    .tp_new = logs_new,
};

/* decode_logs(buf) -> list[Log]: every log of one serialized LogGroup, in order. */
static PyObject *decode_logs(PyObject *self, PyObject *arg) {
    PyObject *logs = PyObject_CallOneArg((PyObject *)&LogsType, arg);
    if (logs == NULL) return NULL;
    PyObject *out = PySequence_List(logs);
    Py_DECREF(logs);
    return out;
}

static PyMethodDef methods[] = {
    {"decode_logs", decode_logs, METH_O,
     "decode_logs(buf) -> list[Log]: the logs of one serialized LogGroup as read-only SDK-shaped objects "
     "(.Time, .Time_ns, .Contents of Content(.Key, .Value)); ValueError on malformed input."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sdklogs", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sdklogs(void) {
    if (PyType_Ready(&ContentType) < 0 || PyType_Ready(&LogType) < 0 || PyType_Ready(&LogsType) < 0 ||
        PyType_Ready(&LogsIterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Content", (PyObject *)&ContentType) < 0 ||
        PyModule_AddObjectRef(m, "Log", (PyObject *)&LogType) < 0 ||
        PyModule_AddObjectRef(m, "Logs", (PyObject *)&LogsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
