/* dedup._ctable: dedup/table.py `SizeBuckets.add`, compiled, for a forked walk's columns.
 *
 * `add_sizes(by_size, repeated, sizes, first)` files rows first, first + 1, ... whose sizes are the
 * machine int64s of *sizes* (a PackedDirs' `sizes` bytes) into *by_size* exactly as
 * SizeBuckets.add does: a size seen once holds the row's int; seen again, an array("I") of both
 * rows, and the size is appended to *repeated*; after that the row is appended to the array.
 *
 * Why: the walk's process merges every task's files into the buckets, one at a time, while the
 * other processes list (/usr/lib: 58,841 files, 31 ms of its CPU in
 * `python -m cProfile -s tottime -m dedup -q -0 /usr/lib`).
 * tests/dedup/test_ctable.py checks it against SizeBuckets.add.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *array_type, *typecode_I, *s_append;

static PyObject *add_sizes(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_CheckExact(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "add_sizes(by_size: dict, repeated: list, sizes, first: int)");
        return NULL;
    }
    PyObject *by_size = args[0], *repeated = args[1];
    Py_ssize_t first = PyLong_AsSsize_t(args[3]);
    if (first == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = NULL;
    if (view.len % 8) {
        PyErr_SetString(PyExc_ValueError, "sizes must be int64s");
        goto done;
    }
    Py_ssize_t n = view.len / 8;
    if (first < 0 || first > PY_SSIZE_T_MAX - n) {
        PyErr_SetString(PyExc_OverflowError, "rows out of range");
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        int64_t size;
        memcpy(&size, (const char *)view.buf + k * 8, 8);
        PyObject *key = PyLong_FromLongLong(size);
        PyObject *row = key == NULL ? NULL : PyLong_FromSsize_t(first + k);
        if (row == NULL) {
            Py_XDECREF(key);
            goto done;
        }
        PyObject *bucket = PyDict_GetItemWithError(by_size, key); /* borrowed */
        int rc;
        if (bucket == NULL) {
            rc = PyErr_Occurred() ? -1 : PyDict_SetItem(by_size, key, row);
        } else if (PyLong_CheckExact(bucket)) {
            PyObject *pair = PyTuple_Pack(2, bucket, row);
            PyObject *made = pair == NULL ? NULL : PyObject_CallFunctionObjArgs(array_type, typecode_I, pair, NULL);
            Py_XDECREF(pair);
            rc = made == NULL ? -1 : PyDict_SetItem(by_size, key, made);
            Py_XDECREF(made);
            if (rc == 0)
                rc = PyList_Append(repeated, key);
        } else {
            PyObject *got = PyObject_CallMethodOneArg(bucket, s_append, row);
            rc = got == NULL ? -1 : 0;
            Py_XDECREF(got);
        }
        Py_DECREF(key);
        Py_DECREF(row);
        if (rc < 0)
            goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"add_sizes", (PyCFunction)(void (*)(void))add_sizes, METH_FASTCALL,
     "File rows first, first + 1, ... of int64 *sizes* into size buckets (SizeBuckets.add)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "dedup._ctable",
    .m_doc = "The file table's size buckets, compiled.", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__ctable(void)
{
    PyObject *array_module = PyImport_ImportModule("array");
    if (array_module == NULL)
        return NULL;
    array_type = PyObject_GetAttrString(array_module, "array");
    Py_DECREF(array_module);
    typecode_I = PyUnicode_InternFromString("I");
    s_append = PyUnicode_InternFromString("append");
    if (array_type == NULL || typecode_I == NULL || s_append == NULL)
        return NULL;
    return PyModule_Create(&module);
}
