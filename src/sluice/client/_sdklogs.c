/*
 * sluice.client._sdklogs: one SLS LogGroup (protobuf bytes) -> the SDK-shaped log objects an
 * aliyun-log-python-sdk processor reads: a list of Log (.Time, .Time_ns, .Contents), each Content (.Key, .Value).
 *
 * Why C: programs written for the SDK walk `log_group.Logs[i].Contents[j].Key/.Value`. On the protobuf runtime
 * each of those reads builds a wrapper object or a new str; that walk was the whole cost of seed 002's handler
 * (bench/consumer.py (b)). Here the wire format is walked once, the key strings of the previous log are reused
 * (logs of a group nearly always share their keys, in order), and each Content is a small C object whose
 * .Key/.Value are plain slot reads.
 *
 * The objects are read-only: a program that edits a log through them would otherwise see its edit silently
 * dropped when the group is forwarded (SerializeToString returns the received bytes). Setting an attribute
 * raises AttributeError saying so; the compat layer's LogGroup parses the protobuf message for edits.
 *
 * Values that are not valid UTF-8 come out as bytes (as the protobuf runtime gives proto2 strings it cannot
 * decode). Malformed input raises ValueError; nothing reads past the buffer. Missing required fields take
 * their defaults (0, ""), as the runtime does.
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

/* Contents are collected here, then moved into a tuple of the exact size. */
typedef struct {
    PyObject *local[64];
    PyObject **items;
    Py_ssize_t n, cap;
} Stack;

static int stack_push(Stack *st, PyObject *o) { /* steals o */
    if (st->n == st->cap) {
        Py_ssize_t cap = st->cap * 2;
        PyObject **items = st->items == st->local ? PyMem_Malloc(sizeof(PyObject *) * cap)
                                                  : PyMem_Realloc(st->items, sizeof(PyObject *) * cap);
        if (items == NULL) {
            Py_DECREF(o);
            PyErr_NoMemory();
            return -1;
        }
        if (st->items == st->local) memcpy(items, st->local, sizeof(st->local));
        st->items = items;
        st->cap = cap;
    }
    st->items[st->n++] = o;
    return 0;
}

static void stack_clear(Stack *st) {
    for (Py_ssize_t i = 0; i < st->n; i++) Py_DECREF(st->items[i]);
    if (st->items != st->local) PyMem_Free(st->items);
}

static PyObject *decode_log(Cur m, CachedKey *cache) {
    Stack st;
    st.items = st.local;
    st.n = 0;
    st.cap = 64;
    uint64_t time = 0;
    uint32_t time_ns = 0;
    int has_ns = 0;
    while (m.p < m.end) {
        uint32_t f;
        int wt;
        if (read_key(&m, &f, &wt) < 0) goto fail;
        if (f == 1 && wt == 0) {
            if (read_varint(&m, &time) < 0) goto fail;
        } else if (f == 2 && wt == 2) {
            Cur content, k, v;
            if (read_len(&m, &content) < 0) goto fail;
            k.p = k.end = v.p = v.end = content.p;
            while (content.p < content.end) { /* Key and Value: last occurrence wins, absent = "" */
                uint32_t cf;
                int cwt;
                if (read_key(&content, &cf, &cwt) < 0) goto fail;
                if (cwt == 2 && (cf == 1 || cf == 2)) {
                    if (read_len(&content, cf == 1 ? &k : &v) < 0) goto fail;
                } else if (skip(&content, cwt) < 0) {
                    goto fail;
                }
            }
            PyObject *key = cached_key(cache, st.n, k.p, k.end - k.p);
            if (key == NULL) goto fail;
            PyObject *value = text(v.p, v.end - v.p);
            if (value == NULL) {
                Py_DECREF(key);
                goto fail;
            }
            PyObject *c = new_content(key, value);
            if (c == NULL || stack_push(&st, c) < 0) goto fail;
        } else if (f == 4 && wt == 5) {
            if (m.end - m.p < 4) {
                bad("truncated fixed32");
                goto fail;
            }
            time_ns = (uint32_t)m.p[0] | ((uint32_t)m.p[1] << 8) | ((uint32_t)m.p[2] << 16) | ((uint32_t)m.p[3] << 24);
            has_ns = 1;
            m.p += 4;
        } else if (skip(&m, wt) < 0) {
            goto fail;
        }
    }
    PyObject *contents = PyTuple_New(st.n);
    if (contents == NULL) goto fail;
    for (Py_ssize_t i = 0; i < st.n; i++) PyTuple_SET_ITEM(contents, i, st.items[i]);
    /* Content objects hold only str/bytes and are not GC types, so the tuple can never be part of a cycle:
     * leave it out of the collector (a batch makes ~150,000 of them; tracked, they set off a young-generation
     * collection every 700) */
    PyObject_GC_UnTrack(contents);
    st.n = 0; /* moved into the tuple */
    stack_clear(&st);
    LogObject *log = PyObject_New(LogObject, &LogType);
    if (log == NULL) {
        Py_DECREF(contents);
        return NULL;
    }
    log->contents = contents;
    log->time = PyLong_FromUnsignedLong((unsigned long)(uint32_t)time);
    log->time_ns = PyLong_FromUnsignedLong(time_ns);
    log->has_time_ns = has_ns;
    if (log->time == NULL || log->time_ns == NULL) {
        Py_DECREF(log);
        return NULL;
    }
    return (PyObject *)log;
fail:
    stack_clear(&st);
    return NULL;
}

/* decode_logs(buf) -> list[Log]: every Logs field (1) of one serialized LogGroup, in order. */
static PyObject *decode_logs(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Cur g = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    CachedKey cache[KEY_CACHE];
    memset(cache, 0, sizeof(cache));
    PyObject *out = PyList_New(0);
    if (out == NULL) goto done;
    while (g.p < g.end) {
        uint32_t f;
        int wt;
        Cur sub;
        if (read_key(&g, &f, &wt) < 0) goto fail;
        if (f == 1 && wt == 2) {
            if (read_len(&g, &sub) < 0) goto fail;
            PyObject *log = decode_log(sub, cache);
            if (log == NULL) goto fail;
            int r = PyList_Append(out, log);
            Py_DECREF(log);
            if (r < 0) goto fail;
        } else if (skip(&g, wt) < 0) {
            goto fail;
        }
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    for (int i = 0; i < KEY_CACHE; i++) Py_XDECREF(cache[i].str);
    PyBuffer_Release(&view);
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
    if (PyType_Ready(&ContentType) < 0 || PyType_Ready(&LogType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Content", (PyObject *)&ContentType) < 0 ||
        PyModule_AddObjectRef(m, "Log", (PyObject *)&LogType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
