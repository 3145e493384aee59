/* cache._ccompact: the copy loop of cache/compact.py `copy_compacted`, compiled.
 *
 * A compaction copies every live PUT record from the old file's map behind a new header: the same
 * key and value bytes, the next sequence number, the header's CRC computed again and the body's
 * carried over from the old one (CRC32 is linear: crc32(D, a) ^ crc32(D, b) is a ^ b times
 * x^(8 len D) modulo the polynomial, computed here as zlib's crc32_combine computes it). The bench
 * trace's compaction (20,000 records, 42 MiB) spent 111 ms in the Python loop's own code, 34 ms
 * here (cProfile); its wall, bound by the new file's writes on the writer thread, went 182 -> 160
 * ms (bench/cache/stalls.py, medians of 9 alternated rounds). Records this loop does not take (past the map, or failing a check)
 * are left to the Python loop, which raises the error naming the file; checked against it in
 * tests/cache/test_compact_copy.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { HEAD = 25, PUT = 1, MORE = 0x80 };
#include "_ccrc.h"

static uint32_t x2n_table[32];

/* a * b modulo the CRC polynomial (bit-reflected, as zlib's multmodp) */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ CRC_POLY : b >> 1;
    }
    return p;
}

/* x^(n * 2^k) modulo the polynomial (zlib's x2nmodp) */
static uint32_t x2nmodp(uint64_t n, unsigned k)
{
    uint32_t p = 1u << 31; /* x^0 */
    while (n) {
        if (n & 1)
            p = multmodp(x2n_table[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

static void tables_init(void)
{
    crc_init();
    uint32_t p = 1u << 30; /* x^1 */
    x2n_table[0] = p;
    for (int n = 1; n < 32; n++)
        x2n_table[n] = p = multmodp(p, p);
}

/* crc32(D, a) ^ crc32(D, b) for any n bytes D, where delta = a ^ b (compact.py's _crc_shift) */
static uint32_t crc_shift(uint32_t delta, uint64_t n)
{
    return multmodp(x2nmodp(n, 3), delta);
}

/* copy_puts(src, locations, index, seq, at, buf, fill, moved, limit) -> (index, seq, at, fill)
 *
 * Copies records into the bytearray buf from fill on (it is never resized: a buffer reused for
 * every chunk costs no fresh pages, which cost more than the copy), while they fit, until fill
 * reaches limit. */
static PyObject *copy_puts(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 || !PyList_Check(args[1]) || !PyByteArray_Check(args[5]) || !PyList_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "copy_puts(src, locations: list, index, seq, at, buf: bytearray, "
                                         "fill, moved: list, limit)");
        return NULL;
    }
    PyObject *locations = args[1], *moved = args[7];
    char *out = PyByteArray_AS_STRING(args[5]);
    Py_ssize_t capacity = PyByteArray_GET_SIZE(args[5]);
    Py_ssize_t i = PyLong_AsSsize_t(args[2]), fill = PyLong_AsSsize_t(args[6]), limit = PyLong_AsSsize_t(args[8]);
    unsigned long long seq = PyLong_AsUnsignedLongLong(args[3]);
    long long at = PyLong_AsLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (fill < 0 || fill > capacity) {
        PyErr_SetString(PyExc_ValueError, "fill is outside the buffer");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *src = view.buf;
    Py_ssize_t n = PyList_GET_SIZE(locations);
    for (; i < n; i++) {
        PyObject *loc = PyList_GET_ITEM(locations, i);
        if (!PyTuple_Check(loc) || PyTuple_GET_SIZE(loc) < 3 || !PyBytes_Check(PyTuple_GET_ITEM(loc, 2)))
            break; /* the Python loop says what is wrong */
        long long offset = PyLong_AsLongLong(PyTuple_GET_ITEM(loc, 0));
        long long length = PyLong_AsLongLong(PyTuple_GET_ITEM(loc, 1));
        if (PyErr_Occurred())
            goto error;
        PyObject *kb = PyTuple_GET_ITEM(loc, 2);
        if (offset < 0 || length < HEAD || offset + length > view.len || length > capacity - fill)
            break; /* past the map (read with pread), or larger than the room left: the Python loop */
        const unsigned char *rec = src + offset;
        uint32_t body_crc, head_crc, klen, vlen;
        memcpy(&body_crc, rec, 4);
        memcpy(&head_crc, rec + 4, 4);
        memcpy(&klen, rec + 17, 4);
        memcpy(&vlen, rec + 21, 4);
        Py_ssize_t klen_index = PyBytes_GET_SIZE(kb);
        if ((long long)klen + vlen + HEAD != length || crc32_of(rec + 8, HEAD - 8) != head_crc ||
            (rec[8] & ~MORE) != PUT || (Py_ssize_t)klen != klen_index ||
            memcmp(rec + HEAD, PyBytes_AS_STRING(kb), klen) != 0)
            break; /* damaged, or not what the index says: the Python loop raises the error */
        unsigned char head[HEAD];
        head[8] = PUT;
        memcpy(head + 9, &seq, 8);
        memcpy(head + 17, &klen, 4);
        memcpy(head + 21, &vlen, 4);
        uint32_t new_head = crc32_of(head + 8, HEAD - 8);
        body_crc ^= crc_shift(head_crc ^ new_head, (uint64_t)klen + vlen);
        memcpy(head, &body_crc, 4);
        memcpy(head + 4, &new_head, 4);
        PyObject *where = PyLong_FromLongLong(at);
        if (where == NULL || PyList_Append(moved, where) < 0) {
            Py_XDECREF(where);
            goto error;
        }
        Py_DECREF(where);
        memcpy(out + fill, head, HEAD);
        memcpy(out + fill + HEAD, rec + HEAD, length - HEAD);
        fill += length;
        at += length;
        seq++;
        if (fill >= limit) {
            i++;
            break;
        }
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nKLn", i, seq, at, fill);
error:
    PyBuffer_Release(&view);
    return NULL;
}

static PyObject *shift(PyObject *module, PyObject *args)
{
    unsigned long delta;
    unsigned long long n;
    if (!PyArg_ParseTuple(args, "kK", &delta, &n))
        return NULL;
    return PyLong_FromUnsignedLong(crc_shift((uint32_t)delta, n));
}

static PyMethodDef methods[] = {
    {"copy_puts", (PyCFunction)(void (*)(void))copy_puts, METH_FASTCALL,
     "Copy PUT records from the old map into buf; return (index, seq, at, fill) where it stopped."},
    {"crc_shift", shift, METH_VARARGS, "crc32(D, a) ^ crc32(D, b) for len(D) == n, given a ^ b."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cache._ccompact", "The copy loop of a compaction, compiled.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ccompact(void)
{
    tables_init();
    return PyModule_Create(&module_def);
}
