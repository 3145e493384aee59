/* cache._cfollow: the loop of cache/follow.py `apply_published`, compiled.
 *
 * With N processes on one cache file every record is applied by N - 1 of them, so this loop is most
 * of what a shared cache costs per operation at 8 processes (cache/follow.py's docstring). It does
 * exactly what the Python loop does, record for record, and is checked against it (tests/cache/
 * test_cfollow.py): the framing and sequence checks, a TOUCH moved through the order's own
 * `move_to_end`, a PUT applied as RecencyOrder.load_evicting and IndexReplay._apply_put apply it
 * (a str, bytes or int key decoded here from its bytes, others through the decoded keys or the
 * index's `key_of`; the entry popped and set again at the end of the OrderedDict; the least recent
 * entries popped while the order is over its bounds; the owner's live bytes and the order's weight
 * kept), and every other record handed to the same Python functions as before (`apply`,
 * follow.py's `_apply_group` and `_touch_slow`).
 *
 * The OrderedDict is only read through the dict API (which an OrderedDict subclass allows) and only
 * changed through its own mapping and methods, which keep its linked order. The order's
 * `total_weight` and the owner's `_live` are read at the start, and written back at the end and
 * around every call into Python that may read or change them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { HEAD = 25, PUT = 1, TOUCH = 3, LAST_KIND = 5, MORE = 0x80 };
/* Index (cache/follow.py) fields, by position */
enum { I_KEYS, I_KEY_OF, I_MOVE_TO_END, I_APPLY, I_PUT, I_ENTRIES, I_ORDER, I_OWNER, I_SIZE };

static PyObject *touch_slow, *apply_group, *python_loop;
static PyObject *s_total_weight, *s_live, *s_capacity, *s_max_bytes, *s_popitem;

typedef struct {
    PyObject *order, *owner;
    long long weight, live, capacity, max_bytes; /* capacity and max_bytes: -1 for None */
    long long loaded_weight, loaded_live;        /* as read: written back only if changed */
} State;

static int get_ll(PyObject *obj, PyObject *name, long long *out, int none_ok)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    if (v == Py_None && none_ok) {
        *out = -1;
    } else {
        *out = PyLong_AsLongLong(v);
        if (*out == -1 && PyErr_Occurred()) {
            Py_DECREF(v);
            return -1;
        }
    }
    Py_DECREF(v);
    return 0;
}

static int set_ll(PyObject *obj, PyObject *name, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return rc;
}

static int load_state(State *st)
{
    if (get_ll(st->order, s_total_weight, &st->weight, 0) < 0 ||
        get_ll(st->owner, s_live, &st->live, 0) < 0 ||
        get_ll(st->order, s_capacity, &st->capacity, 1) < 0 ||
        get_ll(st->order, s_max_bytes, &st->max_bytes, 1) < 0)
        return -1;
    st->loaded_weight = st->weight;
    st->loaded_live = st->live;
    return 0;
}

static int store_state(State *st)
{
    if ((st->weight != st->loaded_weight && set_ll(st->order, s_total_weight, st->weight) < 0) ||
        (st->live != st->loaded_live && set_ll(st->owner, s_live, st->live) < 0))
        return -1;
    st->loaded_weight = st->weight;
    st->loaded_live = st->live;
    return 0;
}

/* Write the state back on an error path without losing the error being raised. */
static void store_state_keeping_error(State *st)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (store_state(st) < 0)
        PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* the format is little endian; so is every platform this module is built for */
}

static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* (payload, weight) -> the weight and the payload's length (its second field), checked. */
static int entry_sizes(PyObject *entry, long long *weight, long long *length)
{
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(entry, 0)) ||
        PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 0)) < 2) {
        PyErr_SetString(PyExc_TypeError, "an index entry is not ((offset, length, key bytes), weight)");
        return -1;
    }
    *weight = PyLong_AsLongLong(PyTuple_GET_ITEM(entry, 1));
    if (*weight == -1 && PyErr_Occurred())
        return -1;
    *length = PyLong_AsLongLong(PyTuple_GET_ITEM(PyTuple_GET_ITEM(entry, 0), 1));
    if (*length == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

static int over_bounds(State *st, Py_ssize_t count)
{
    return (st->capacity >= 0 && count > st->capacity) || (st->max_bytes >= 0 && st->weight > st->max_bytes);
}

/* cache/encoding.py decode_key for its common tags (str, bytes, int), or NULL without an error
 * set for anything else (a tuple, or bytes that do not decode: the Python path decodes those and
 * raises the index's own error). */
static PyObject *decode_plain(const char *data, Py_ssize_t n)
{
    if (n < 1)
        return NULL;
    const char *body = data + 1;
    Py_ssize_t len = n - 1;
    PyObject *key = NULL;
    if (data[0] == 's') {
        key = PyUnicode_DecodeUTF8(body, len, "surrogatepass");
    } else if (data[0] == 'b') {
        key = PyBytes_FromStringAndSize(body, len);
    } else if (data[0] == 'i' && len > 0 && len < 64) {
        /* as decode_key: ASCII digits, with an optional minus sign before them */
        Py_ssize_t i = body[0] == '-' ? 1 : 0;
        if (i == len)
            return NULL;
        for (Py_ssize_t j = i; j < len; j++)
            if (body[j] < '0' || body[j] > '9')
                return NULL;
        char digits[64];
        memcpy(digits, body, len);
        digits[len] = 0;
        key = PyLong_FromString(digits, NULL, 10);
    }
    if (key == NULL)
        PyErr_Clear();
    return key;
}

/* The decoded key of *kb*: decoded here (str, bytes, int), else the one the decoded keys hold, else
 * decoded (and remembered) by the index's `key_of`. New reference. Decoding plain keys in place
 * beats looking them up: the dict of decoded keys is as large as the order, and with 8 processes on
 * 2 cores its look-ups miss the CPU's caches (crc_speed play --opens 8, perf stat, 3 alternated
 * runs: 21.4 -> 18.0 us of CPU an operation; 4 real processes, code_ab, 5 pairs: x1.10 ops/s). */
static PyObject *key_of(PyObject **index, PyObject *kb, Py_ssize_t offset)
{
    PyObject *key = decode_plain(PyBytes_AS_STRING(kb), PyBytes_GET_SIZE(kb));
    if (key != NULL)
        return key;
    key = PyDict_GetItemWithError(index[I_KEYS], kb);
    if (key != NULL)
        return Py_NewRef(key);
    if (PyErr_Occurred())
        return NULL;
    return PyObject_CallFunction(index[I_KEY_OF], "On", kb, offset); /* raises CorruptStoreError */
}

/* A PUT: IndexReplay._apply_put and RecencyOrder.load_evicting in one. */
static int apply_put(State *st, PyObject **index, PyObject *kb, Py_ssize_t offset, Py_ssize_t length,
                     long long weight)
{
    PyObject *entries = index[I_ENTRIES];
    PyObject *key = key_of(index, kb, offset);
    if (key == NULL)
        return -1;
    /* ((offset, length, key bytes), weight), built directly: Py_BuildValue parsing its format
     * was a third of this loop's instructions (callgrind, 8 opens). */
    PyObject *value = PyTuple_New(2), *payload = PyTuple_New(3);
    if (value == NULL || payload == NULL) {
        Py_XDECREF(value);
        Py_XDECREF(payload);
        goto fail;
    }
    PyTuple_SET_ITEM(value, 0, payload);
    PyObject *o = PyLong_FromSsize_t(offset), *l = PyLong_FromSsize_t(length), *w = PyLong_FromLongLong(weight);
    if (o != NULL)
        PyTuple_SET_ITEM(payload, 0, o);
    if (l != NULL)
        PyTuple_SET_ITEM(payload, 1, l);
    PyTuple_SET_ITEM(payload, 2, Py_NewRef(kb));
    if (w != NULL)
        PyTuple_SET_ITEM(value, 1, w);
    if (o == NULL || l == NULL || w == NULL)
        goto fail_value;
    /* Ints and bytes inside: no cycle can run through these tuples, so the collector need not
     * traverse them (it would untrack them itself, after traversing them once). */
    PyObject_GC_UnTrack(payload);
    PyObject_GC_UnTrack(value);
    PyObject *old = PyDict_GetItemWithError(entries, key);
    if (old != NULL) {
        long long old_weight, old_length;
        if (entry_sizes(old, &old_weight, &old_length) < 0 || PyObject_DelItem(entries, key) < 0)
            goto fail_value;
        st->weight -= old_weight;
        st->live -= old_length;
    } else if (PyErr_Occurred()) {
        goto fail_value;
    }
    if (PyObject_SetItem(entries, key, value) < 0)
        goto fail_value;
    Py_DECREF(value);
    Py_DECREF(key);
    st->weight += weight;
    st->live += length;
    while (over_bounds(st, PyDict_GET_SIZE(entries)) && PyDict_GET_SIZE(entries) > 0) {
        PyObject *pair = PyObject_CallMethodOneArg(entries, s_popitem, Py_False); /* least recent */
        if (pair == NULL)
            return -1;
        long long gone_weight, gone_length;
        int rc = PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2
                     ? entry_sizes(PyTuple_GET_ITEM(pair, 1), &gone_weight, &gone_length)
                     : (PyErr_SetString(PyExc_TypeError, "popitem did not return a pair"), -1);
        Py_DECREF(pair);
        if (rc < 0)
            return -1;
        st->weight -= gone_weight;
        st->live -= gone_length;
    }
    return 0;
fail_value:
    Py_DECREF(value);
fail:
    Py_DECREF(key);
    return -1;
}

/* A TOUCH: move the key if present (decoded from its bytes in place: no bytes object, no look-up
 * in the decoded keys), else follow.py's _touch_slow (a tuple key, undecodable bytes, a key gone). */
static int apply_touch(PyObject *indexobj, PyObject **index, const char *kdata, Py_ssize_t klen, Py_ssize_t offset)
{
    PyObject *key = decode_plain(kdata, klen);
    if (key != NULL) {
        PyObject *r = PyObject_CallOneArg(index[I_MOVE_TO_END], key);
        Py_DECREF(key);
        if (r != NULL) {
            Py_DECREF(r);
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            return -1;
        PyErr_Clear(); /* a key gone since: _touch_slow finds nothing to move either */
    }
    PyObject *r = PyObject_CallFunction(touch_slow, "Oy#n", indexobj, kdata, klen, offset);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *apply_published(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "apply_published(buf, pos, end, base, seq, index)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    Py_ssize_t base = PyLong_AsSsize_t(args[3]);
    unsigned long long seq = PyLong_AsUnsignedLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *indexobj = args[5];
    if (PyTuple_Check(indexobj) && PyTuple_GET_SIZE(indexobj) >= I_SIZE &&
        PyTuple_GET_ITEM(indexobj, I_ENTRIES) == Py_None) /* an index without entries: `put` applies */
        return PyObject_Vectorcall(python_loop, args, nargs, NULL);
    if (!PyTuple_Check(indexobj) || PyTuple_GET_SIZE(indexobj) < I_SIZE ||
        !PyDict_Check(PyTuple_GET_ITEM(indexobj, I_KEYS)) || !PyDict_Check(PyTuple_GET_ITEM(indexobj, I_ENTRIES))) {
        PyErr_SetString(PyExc_TypeError, "index must be a cache.follow.Index");
        return NULL;
    }
    PyObject **index = &PyTuple_GET_ITEM(indexobj, 0);
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (pos < 0 || end > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "the span lies outside the buffer");
        return NULL;
    }
    const unsigned char *buf = view.buf;
    State st = {index[I_ORDER], index[I_OWNER], 0, 0, 0, 0, 0, 0};
    if (load_state(&st) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t last = end - HEAD;
    while (pos <= last) {
        const unsigned char *h = buf + pos;
        unsigned kind = h[8];
        uint64_t rseq = rd64(h + 9);
        Py_ssize_t klen = rd32(h + 17), vlen = rd32(h + 21);
        Py_ssize_t kstart = pos + HEAD, vstart = kstart + klen, nxt = vstart + vlen;
        if (rseq != seq || nxt > end)
            break;
        if (kind == TOUCH) {
            if (apply_touch(indexobj, index, (const char *)buf + kstart, klen, base + pos) < 0)
                goto error;
        } else if (kind == PUT) {
            PyObject *kb = PyBytes_FromStringAndSize((const char *)buf + kstart, klen);
            if (kb == NULL)
                goto error;
            int rc = apply_put(&st, index, kb, base + pos, nxt - pos, klen + vlen);
            Py_DECREF(kb);
            if (rc < 0)
                goto error;
        } else if (kind & MORE) {
            if (store_state(&st) < 0)
                goto error;
            PyObject *r = PyObject_CallFunction(apply_group, "OnnnKO", args[0], pos, end, base, seq, index[I_APPLY]);
            if (r == NULL)
                goto error;
            Py_ssize_t pos_after;
            unsigned long long seq_after;
            int ok = PyArg_ParseTuple(r, "nK", &pos_after, &seq_after);
            Py_DECREF(r);
            if (!ok || load_state(&st) < 0)
                goto error;
            if (pos_after == pos)
                break; /* not whole (yet), or not sense: stop before it */
            pos = pos_after;
            seq = seq_after;
            continue;
        } else if (kind >= 1 && kind <= LAST_KIND) { /* DELETE, CLEAR, BOUNDS: rare */
            if (store_state(&st) < 0)
                goto error;
            PyObject *r = PyObject_CallFunction(index[I_APPLY], "Iy#nnn", kind, (const char *)buf + kstart, klen,
                                                base + pos, nxt - pos, vlen);
            if (r == NULL)
                goto error;
            Py_DECREF(r);
            if (load_state(&st) < 0)
                goto error;
        } else {
            break;
        }
        pos = nxt;
        seq += 1;
    }
    PyBuffer_Release(&view);
    if (store_state(&st) < 0)
        return NULL;
    PyObject *result = PyTuple_New(2);
    if (result == NULL)
        return NULL;
    PyObject *p = PyLong_FromSsize_t(pos), *q = PyLong_FromUnsignedLongLong(seq);
    if (p != NULL)
        PyTuple_SET_ITEM(result, 0, p);
    if (q != NULL)
        PyTuple_SET_ITEM(result, 1, q);
    if (p == NULL || q == NULL)
        Py_CLEAR(result);
    return result;
error:
    PyBuffer_Release(&view);
    store_state_keeping_error(&st);
    return NULL;
}

static PyObject *configure(PyObject *module, PyObject *args)
{
    PyObject *slow, *group, *loop;
    if (!PyArg_ParseTuple(args, "OOO", &slow, &group, &loop))
        return NULL;
    Py_XSETREF(touch_slow, Py_NewRef(slow));
    Py_XSETREF(apply_group, Py_NewRef(group));
    Py_XSETREF(python_loop, Py_NewRef(loop));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"apply_published", (PyCFunction)(void (*)(void))apply_published, METH_FASTCALL,
     "Apply the whole writes in buf[pos:end] to index; return (position, sequence number) after them."},
    {"configure", configure, METH_VARARGS, "Set the Python functions of the rare paths (touch_slow, apply_group, the Python loop)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cache._cfollow", "The compiled loop of cache/follow.py apply_published.", -1, methods,
};

PyMODINIT_FUNC PyInit__cfollow(void)
{
    if (!(s_total_weight = PyUnicode_InternFromString("total_weight")) ||
        !(s_live = PyUnicode_InternFromString("_live")) || !(s_capacity = PyUnicode_InternFromString("capacity")) ||
        !(s_max_bytes = PyUnicode_InternFromString("max_bytes")) ||
        !(s_popitem = PyUnicode_InternFromString("popitem")))
        return NULL;
    return PyModule_Create(&module_def);
}
