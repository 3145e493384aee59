/* cache/_cshared.c's definitions: the shared header's layout, its CRC, the Protocol object and how
 * it reads the log's attributes (see _cshared.c). Included by _cshared.c only. */
#ifndef FANMILL_CSHARED_H
#define FANMILL_CSHARED_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include "_ccrc.h"
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

/* cache/shared.py: offsets in the header */
enum { GEN = 8, END = 24, DIRTY = 40, SNAPSHOT = 48, PAGE = 4096 };
#define WRITING UINT64_MAX

static PyObject *apply_published; /* cache.follow.apply_published */
static long lock_tries = 512;     /* cache/catchup.py _LOCK_TRIES */
static PyObject *s_end, *s_next_seq, *s_first_seq, *s_smm, *s_lfd, *s_look_ahead, *s_mm, *s_mapped,
    *s_index, *s_flush_header, *s_begin, *s_flush;

typedef struct {
    PyObject_HEAD
    PyObject *log;  /* the SharedRecordLog */
    PyObject *dict; /* its instance dict */
    char *base;     /* the shared header: this Protocol's own map of PATH.lock's first page */
} Protocol;

static uint64_t rd64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* little endian, as the header; so is every platform this is built for */
    return v;
}

/* A read of the shared page: other processes change it, so it is read again at every call. */
static void shared_read(const Protocol *self, Py_ssize_t at, char *out, size_t n)
{
    __asm__ __volatile__("" ::: "memory");
    memcpy(out, self->base + at, n);
}

static PyObject *attr(Protocol *self, PyObject *name)
{
    if (self->dict == NULL) { /* cleared by the garbage collector: a cycle being freed */
        PyErr_SetString(PyExc_ValueError, "a cleared Protocol");
        return NULL;
    }
    PyObject *v = PyDict_GetItemWithError(self->dict, name); /* borrowed */
    if (v == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_AttributeError, name);
    return v;
}

static int get_ll(Protocol *self, PyObject *name, long long *out)
{
    PyObject *v = attr(self, name);
    if (v == NULL)
        return -1;
    *out = PyLong_AsLongLong(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int get_true(Protocol *self, PyObject *name)
{
    PyObject *v = attr(self, name);
    return v == NULL ? -1 : PyObject_IsTrue(v);
}

/* The descriptor of the writer lock; an error once the log is closed (its `_lfd` is then -1, and
 * the number may name another file by now). Checked before the header is touched. */
static int lock_fd(Protocol *self, int *fd)
{
    long long v;
    if (get_ll(self, s_lfd, &v) < 0)
        return -1;
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "the shared log is closed");
        return -1;
    }
    *fd = (int)v;
    return 0;
}

#endif
