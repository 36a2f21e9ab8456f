/* The solvers' C extensions read their arrays through the buffer protocol only (no NumPy
 * headers): one getter for all of them, included by each (_softmax_ce.c, _centering.c,
 * _data_cd.c); and CLONES, which builds a hot loop for the widest vector unit the CPU has. */
#ifndef SPARSE_PROBE_BUFFERS_H
#define SPARSE_PROBE_BUFFERS_H

#include <Python.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define NATIVE_ORDER "@=>"
#else
#define NATIVE_ORDER "@=<"
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* one build for every x86-64 CPU: the loader picks the widest vector unit (ifunc) */
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

static const char *
type_name(const char *fmt)
{
    return fmt[0] == 'd' ? "float64" : fmt[0] == 'f' ? "float32" : "int64";
}

/* A C-contiguous buffer of `count` items (any number where count < 0) of format `fmt` ("d",
 * "f" or "q"), or None -> NULL where `may_be_none`. On failure a ValueError naming `where`
 * (the function) and `name` (the argument), and -1; view->obj is NULL then. */
static int
get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t count, const char *fmt,
           const char *where, const char *name, int may_be_none)
{
    view->obj = NULL;
    view->buf = NULL;
    if (obj == Py_None && may_be_none)
        return 0;
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) { /* not an array, strided or read-only */
        PyErr_Format(PyExc_ValueError, "%s: %s must be a C-contiguous%s %s array", where, name,
                     writable ? ", writable" : "", type_name(fmt));
        view->obj = NULL;
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (f[0] && strchr(NATIVE_ORDER, f[0])) /* "<d" (ctypes), "@d": native byte order */
        f++;
    int ok = strcmp(f, fmt) == 0 || (fmt[0] == 'q' && strcmp(f, "l") == 0 && view->itemsize == 8);
    if (!ok || (count >= 0 ? view->len != count * view->itemsize : view->len % view->itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be a C-contiguous %s array of %zd entries",
                     where, name, type_name(fmt),
                     count >= 0 ? count : view->len / view->itemsize);
        PyBuffer_Release(view);
        view->obj = NULL;
        view->buf = NULL;
        return -1;
    }
    return 0;
}

#endif
