/*
 * sluice.wire._logdecode: one SLS LogGroup (protobuf bytes) -> a list of dicts, one per log.
 *
 * Why C: building a dict per log through the protobuf runtime costs two attribute reads per field (each
 * making a new str) plus a Python-level loop; that is the whole cost of a handler that wants dicts, for the
 * official SDK and for us alike (bench/consumer.py, test (b)). Walking the wire format here and reusing the
 * key strings of the previous log (logs of a group nearly always share their keys, in order) does the same
 * work several times faster. The result is exactly what LazyLogGroup.logs() builds in Python:
 *   {<Contents Key>: <Value>, ..., "__time__": Time, "__topic__": Topic, "__source__": Source,
 *    "__tag__:<k>": <v>, ...}
 * Values that are not valid UTF-8 come out as bytes, as the protobuf runtime gives them for proto2 strings.
 *
 * Schema (proto2, SLS's): LogGroup{1: Logs, 2: Reserved, 3: Topic, 4: Source, 5: MachineUUID, 6: LogTags},
 * Log{1: Time uint32, 2: Contents, 4: Time_ns fixed32}, Content{1: Key, 2: Value}, LogTag{1: Key, 2: Value}.
 * Unknown fields are skipped; malformed input (truncated, bad varint, bad wire type) raises ValueError,
 * never reads past the buffer. Missing required fields take their defaults (0, "").
 *
 * logs_span(buf) serves a second job, packing: consecutive groups whose bytes outside their Logs are equal
 * (same topic, source, tags, anything else) can be sent as ONE LogGroup, their Logs fields concatenated,
 * which spares a request per group (wire/pack.py). It finds where the Logs fields lie without decoding them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_pbread.h"


/* The scans below hop from field header to field header: each hop is a load that depends on the previous
 * one, so on a group not yet in cache every hop waited for memory (a cold 230 kB group scanned at ~1/3 of
 * the speed of a memcpy). Asking for the lines ahead of the cursor lets those loads overlap. */
#define PREFETCH_DISTANCE 2048
#if defined(__GNUC__) || defined(__clang__)
/* requests every cache line up to PREFETCH_DISTANCE bytes ahead of the cursor, each once (*pf: how far) */
#define PREFETCH_AHEAD(c, pf)                                                         \
    do {                                                                              \
        const uint8_t *lim_ = (c).end - (c).p > PREFETCH_DISTANCE ? (c).p + PREFETCH_DISTANCE : (c).end; \
        for (; (pf) < lim_; (pf) += 64) __builtin_prefetch(pf);                       \
    } while (0)
#else
#define PREFETCH_AHEAD(c, pf) ((void)0)
#endif


static int set_span(PyObject *d, PyObject *key, Cur span) {
    PyObject *v = text(span.p, span.end - span.p);
    if (v == NULL) return -1;
    int r = PyDict_SetItem(d, key, v);
    Py_DECREF(v);
    return r;
}

/* The group's part of every log: __topic__, __source__, __tag__:k. New reference to a dict. */
static PyObject *group_base(Cur g) {
    Cur topic = {g.p, g.p}, source = {g.p, g.p};
    PyObject *tags = PyList_New(0);
    if (tags == NULL) return NULL;
    PyObject *base = NULL;
    while (g.p < g.end) {
        uint32_t f;
        int wt;
        Cur sub;
        if (read_key(&g, &f, &wt) < 0) goto done;
        if (wt == 2 && (f == 3 || f == 4 || f == 6)) {
            if (read_len(&g, &sub) < 0) goto done;
            if (f == 3) topic = sub;
            else if (f == 4) source = sub;
            else {
                Cur k, v;
                if (read_pair(sub, &k, &v) < 0) goto done;
                PyObject *kv = Py_BuildValue("(y#y#)", (const char *)k.p, (Py_ssize_t)(k.end - k.p),
                                             (const char *)v.p, (Py_ssize_t)(v.end - v.p));
                if (kv == NULL || PyList_Append(tags, kv) < 0) {
                    Py_XDECREF(kv);
                    goto done;
                }
                Py_DECREF(kv);
            }
        } else if (skip(&g, wt) < 0) {
            goto done;
        }
    }
    base = PyDict_New();
    if (base == NULL) goto done;
    PyObject *k;
    if ((k = PyUnicode_FromString("__topic__")) == NULL || set_span(base, k, topic) < 0) goto fail_k;
    Py_DECREF(k);
    if ((k = PyUnicode_FromString("__source__")) == NULL || set_span(base, k, source) < 0) goto fail_k;
    Py_DECREF(k);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tags); i++) {
        PyObject *kv = PyList_GET_ITEM(tags, i);
        const char *kp = PyBytes_AS_STRING(PyTuple_GET_ITEM(kv, 0));
        Py_ssize_t kn = PyBytes_GET_SIZE(PyTuple_GET_ITEM(kv, 0));
        PyObject *tag_key = text((const uint8_t *)kp, kn);
        if (tag_key == NULL) goto fail;
        PyObject *name = PyUnicode_Check(tag_key) ? PyUnicode_FromFormat("__tag__:%U", tag_key)
                                                  : PyUnicode_FromFormat("__tag__:%S", tag_key);
        Py_DECREF(tag_key);
        if (name == NULL) goto fail;
        Cur v = {(const uint8_t *)PyBytes_AS_STRING(PyTuple_GET_ITEM(kv, 1)), NULL};
        v.end = v.p + PyBytes_GET_SIZE(PyTuple_GET_ITEM(kv, 1));
        int r = set_span(base, name, v);
        Py_DECREF(name);
        if (r < 0) goto fail;
    }
    goto done;
fail_k:
    Py_XDECREF(k);
fail:
    Py_CLEAR(base);
done:
    Py_DECREF(tags);
    return base;
}

static PyObject *decode_log(Cur m, CachedKey *cache, PyObject *base, PyObject *time_key) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    uint64_t time = 0;
    Py_ssize_t i = 0;
    while (m.p < m.end) {
        uint32_t f;
        int wt;
        if (read_key(&m, &f, &wt) < 0) goto fail;
        if (f == 1 && wt == 0) {
            if (read_varint(&m, &time) < 0) goto fail;
        } else if (f == 2 && wt == 2) {
            Cur content, k, v;
            if (read_len(&m, &content) < 0 || read_pair(content, &k, &v) < 0) goto fail;
            PyObject *key = cached_key(cache, i++, k.p, k.end - k.p);
            if (key == NULL) goto fail;
            int r = set_span(d, key, v);
            Py_DECREF(key);
            if (r < 0) goto fail;
        } else if (skip(&m, wt) < 0) {
            goto fail;
        }
    }
    PyObject *t = PyLong_FromUnsignedLong((unsigned long)(uint32_t)time);
    if (t == NULL || PyDict_SetItem(d, time_key, t) < 0) {
        Py_XDECREF(t);
        goto fail;
    }
    Py_DECREF(t);
    if (PyDict_Update(d, base) < 0) goto fail;
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

static PyObject *group_logs(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Cur g = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    CachedKey cache[KEY_CACHE];
    memset(cache, 0, sizeof(cache));
    PyObject *out = NULL, *base = NULL, *time_key = NULL;
    base = group_base(g);
    if (base == NULL) goto done;
    time_key = PyUnicode_InternFromString("__time__");
    out = PyList_New(0);
    if (time_key == NULL || out == NULL) goto fail;
    const uint8_t *pf = g.p;
    while (g.p < g.end) {
        uint32_t f;
        int wt;
        Cur sub;
        PREFETCH_AHEAD(g, pf);
        if (read_key(&g, &f, &wt) < 0) goto fail;
        if (f == 1 && wt == 2) {
            if (read_len(&g, &sub) < 0) goto fail;
            PyObject *d = decode_log(sub, cache, base, time_key);
            if (d == NULL) goto fail;
            int r = PyList_Append(out, d);
            Py_DECREF(d);
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
    Py_XDECREF(base);
    Py_XDECREF(time_key);
    PyBuffer_Release(&view);
    return out;
}

/* One pass over a LogGroup's top-level fields: where its Logs lie and what its header says. */
typedef struct {
    Cur topic, source, uuid;
    Py_ssize_t start, end, n; /* the Logs run; start -1: no logs */
    int contiguous;
} Layout;

static int scan_group(const uint8_t *base, Py_ssize_t len, Layout *out, PyObject *tags) {
    Cur g = {base, base + len};
    const uint8_t *pf = base;
    int after_run = 0;
    out->topic.p = out->topic.end = out->source.p = out->source.end = out->uuid.p = out->uuid.end = base;
    out->start = out->end = -1;
    out->n = 0;
    out->contiguous = 1;
    while (g.p < g.end) {
        const uint8_t *at = g.p;
        uint32_t f;
        int wt;
        Cur sub;
        PREFETCH_AHEAD(g, pf);
        if (read_key(&g, &f, &wt) < 0) return -1;
        if (f == 1 && wt == 2) {
            if (read_len(&g, &sub) < 0) return -1;
            if (out->start < 0) out->start = at - base;
            else if (after_run) out->contiguous = 0;
            out->end = g.p - base;
            out->n++;
            continue;
        }
        if (f == 1) out->contiguous = 0;
        if (out->start >= 0) after_run = 1;
        if (wt == 2 && (f == 3 || f == 4 || f == 5 || f == 6)) {
            if (read_len(&g, &sub) < 0) return -1;
            if (f == 3) out->topic = sub;
            else if (f == 4) out->source = sub;
            else if (f == 5) out->uuid = sub;
            else if (tags != NULL) {
                Cur k, v;
                if (read_pair(sub, &k, &v) < 0) return -1;
                PyObject *key = text(k.p, k.end - k.p);
                PyObject *value = key ? text(v.p, v.end - v.p) : NULL;
                PyObject *kv = value ? PyTuple_Pack(2, key, value) : NULL;
                Py_XDECREF(key);
                Py_XDECREF(value);
                if (kv == NULL || PyList_Append(tags, kv) < 0) {
                    Py_XDECREF(kv);
                    return -1;
                }
                Py_DECREF(kv);
            }
        } else if (skip(&g, wt) < 0) {
            return -1;
        }
    }
    if (out->start < 0) out->start = out->end = 0;
    return 0;
}

/* logs_span(buf) -> (start, end, n_logs): the byte range holding every Logs field (field 1, length-delimited)
 * of one LogGroup, when they form one contiguous run ((0, 0, 0) with no logs); None when they do not, or when
 * field 1 appears with another wire type (such a group is never packed). */
static PyObject *logs_span(PyObject *self, PyObject *arg) {
    Py_buffer view;
    Layout l;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    int r = scan_group((const uint8_t *)view.buf, view.len, &l, NULL);
    PyBuffer_Release(&view);
    if (r < 0) return NULL;
    if (!l.contiguous) Py_RETURN_NONE;
    return Py_BuildValue("(nnn)", l.start, l.end, l.n);
}

/* group_header(buf) -> (topic, source, machine_uuid, [(tag key, tag value), ...], n_logs, span): the header
 * as the protobuf runtime reads it (last value wins, str or bytes as for proto2 strings) and logs_span's
 * answer, in one pass that decodes no log. */
static PyObject *group_header(PyObject *self, PyObject *arg) {
    Py_buffer view;
    Layout l;
    PyObject *tags = PyList_New(0), *out = NULL;
    if (tags == NULL) return NULL;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(tags);
        return NULL;
    }
    if (scan_group((const uint8_t *)view.buf, view.len, &l, tags) == 0) {
        PyObject *topic = text(l.topic.p, l.topic.end - l.topic.p);
        PyObject *source = topic ? text(l.source.p, l.source.end - l.source.p) : NULL;
        PyObject *uuid = source ? text(l.uuid.p, l.uuid.end - l.uuid.p) : NULL;
        PyObject *span = NULL;
        if (uuid != NULL) {
            if (l.contiguous) span = Py_BuildValue("(nnn)", l.start, l.end, l.n);
            else span = Py_NewRef(Py_None);
        }
        if (span != NULL) out = Py_BuildValue("(OOOOnO)", topic, source, uuid, tags, l.n, span);
        Py_XDECREF(topic);
        Py_XDECREF(source);
        Py_XDECREF(uuid);
        Py_XDECREF(span);
    }
    PyBuffer_Release(&view);
    Py_DECREF(tags);
    return out;
}

static PyMethodDef methods[] = {
    {"group_header", group_header, METH_O,
     "group_header(buf) -> (topic, source, machine_uuid, tags, n_logs, span): one LogGroup's header and "
     "logs_span(buf), without decoding a log; ValueError on malformed input."},
    {"logs_span", logs_span, METH_O,
     "logs_span(buf) -> (start, end, n_logs) | None: where the Logs fields of one serialized LogGroup lie, "
     "if contiguous; ValueError on malformed input."},
    {"group_logs", group_logs, METH_O,
     "group_logs(buf) -> list[dict]: every log of one serialized LogGroup as a dict (fields, __time__, "
     "__topic__, __source__, __tag__:k); ValueError on malformed input."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_logdecode", NULL, -1, methods};

PyMODINIT_FUNC PyInit__logdecode(void) { return PyModule_Create(&module); }
