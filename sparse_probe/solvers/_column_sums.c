/* The statistics' pass of a fit in one read of the rows: per column the float64 sums of the
 * shifted values and of their squares, and per class the float64 sums of the raw rows.
 *
 * For a row block X (rows, d), float32 or float64, C-contiguous, a shift (d,) (the data's
 * first row: shifted sums keep the variance accurate for columns whose mean is large against
 * their spread) and labels y (rows,) in [0, C):
 *
 *     s_j += sum_i (x_ij - shift_j),   q_j += sum_i (x_ij - shift_j)^2,   S_{y_i j} += x_ij
 *
 * each sum in row order, one float64 addition per row (the torch route sums row blocks
 * pairwise: the results agree to float64 rounding). sparse_probe.fit_common.column_sums is
 * the caller; its torch route (column_stats and class_sums) is the reference it is checked
 * against once per process. The torch route converts each block to float64, subtracts, squares
 * and reduces in separate passes, each a fresh block-sized temporary: 16 ms and 10 ms of a
 * fresh process's 10,000 x 256 fit, against one read of the block here.
 *
 * Non-finite entries: a NaN or an infinity makes its column's s non-finite, so the sums are
 * checked after the block and, where one is, the block is scanned again for its first such
 * entry, whose flat index is returned (-1: every entry finite). Only the buffer protocol is
 * used (no NumPy headers).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

#include "_buffers.h"

#define WHERE "_column_sums.sums"

/* sums_f32 and sums_f64: the block's rows of element type T added to s, q and S (above). */
#define DEFINE_SUMS(NAME, T)                                                                 \
    CLONES static void NAME(const T *X, Py_ssize_t rows, Py_ssize_t d, const double *shift,   \
                            double *s, double *q, const long long *y, double *S)              \
    {                                                                                         \
        for (Py_ssize_t i = 0; i < rows; i++) {                                               \
            const T *x = X + i * d;                                                           \
            double *Sy = S ? S + (Py_ssize_t)y[i] * d : NULL;                                 \
            for (Py_ssize_t j = 0; j < d; j++) {                                              \
                double t = (double)x[j] - shift[j];                                           \
                s[j] += t;                                                                    \
                q[j] += t * t;                                                                \
            }                                                                                 \
            if (Sy)                                                                           \
                for (Py_ssize_t j = 0; j < d; j++)                                            \
                    Sy[j] += (double)x[j];                                                    \
        }                                                                                     \
    }

DEFINE_SUMS(sums_f32, float)
DEFINE_SUMS(sums_f64, double)

/* The flat index of the block's first non-finite entry, -1 where there is none. */
static Py_ssize_t
first_bad(const void *X, int f32, Py_ssize_t count)
{
    for (Py_ssize_t k = 0; k < count; k++) {
        double v = f32 ? (double)((const float *)X)[k] : ((const double *)X)[k];
        if (!isfinite(v))
            return k;
    }
    return -1;
}

static PyObject *
sums(PyObject *self, PyObject *args)
{
    PyObject *oX, *oshift, *os, *oq, *oy = Py_None, *oS = Py_None;
    Py_ssize_t d, C = 0;
    if (!PyArg_ParseTuple(args, "OnOOO|OOn:sums", &oX, &d, &oshift, &os, &oq, &oy, &oS, &C))
        return NULL;
    if (d < 1 || C < 0 || (oy == Py_None) != (oS == Py_None)) {
        PyErr_SetString(PyExc_ValueError,
                        WHERE ": need d >= 1, C >= 0, and y and S given together");
        return NULL;
    }
    Py_buffer X, sh, s, q, y, S;
    int f32;
    PyObject *ret = NULL;
    /* X: float32 or float64 (whichever the buffer says), rows of d entries */
    if (PyObject_GetBuffer(oX, &X, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_SetString(PyExc_ValueError, WHERE ": X must be a C-contiguous float32 or "
                                          "float64 array");
        return NULL;
    }
    {
        const char *f = X.format ? X.format : "B";
        if (f[0] && strchr(NATIVE_ORDER, f[0]))
            f++;
        f32 = strcmp(f, "f") == 0;
        if ((!f32 && strcmp(f, "d") != 0) || X.len % (X.itemsize * d)) {
            PyErr_Format(PyExc_ValueError, WHERE ": X must be a C-contiguous float32 or "
                                           "float64 array of rows of %zd entries", d);
            PyBuffer_Release(&X);
            return NULL;
        }
    }
    Py_ssize_t rows = X.len / (X.itemsize * d);
    sh.obj = s.obj = q.obj = y.obj = S.obj = NULL;
    if (get_buffer(oshift, &sh, 0, d, "d", WHERE, "shift", 0) < 0 ||
        get_buffer(os, &s, 1, d, "d", WHERE, "s", 0) < 0 ||
        get_buffer(oq, &q, 1, d, "d", WHERE, "q", 0) < 0 ||
        get_buffer(oy, &y, 0, rows, "q", WHERE, "y", 1) < 0 ||
        get_buffer(oS, &S, 1, C * d, "d", WHERE, "S", 1) < 0)
        goto done;
    const long long *yv = (const long long *)y.buf;
    if (yv)
        for (Py_ssize_t i = 0; i < rows; i++)
            if (yv[i] < 0 || yv[i] >= C) {
                PyErr_Format(PyExc_ValueError, WHERE ": y[%zd] = %lld is not in [0, %zd)", i,
                             yv[i], C);
                goto done;
            }
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    if (f32)
        sums_f32((const float *)X.buf, rows, d, (const double *)sh.buf, (double *)s.buf,
                 (double *)q.buf, yv, (double *)S.buf);
    else
        sums_f64((const double *)X.buf, rows, d, (const double *)sh.buf, (double *)s.buf,
                 (double *)q.buf, yv, (double *)S.buf);
    const double *sv = (const double *)s.buf;
    for (Py_ssize_t j = 0; j < d; j++)
        if (!isfinite(sv[j])) {
            bad = first_bad(X.buf, f32, rows * d);
            break;
        }
    Py_END_ALLOW_THREADS
    ret = PyLong_FromSsize_t(bad);
done:
    PyBuffer_Release(&X);
    if (sh.obj)
        PyBuffer_Release(&sh);
    if (s.obj)
        PyBuffer_Release(&s);
    if (q.obj)
        PyBuffer_Release(&q);
    if (y.obj)
        PyBuffer_Release(&y);
    if (S.obj)
        PyBuffer_Release(&S);
    return ret;
}

static PyMethodDef methods[] = {
    {"sums", sums, METH_VARARGS,
     "sums(X, d, shift, s, q, y=None, S=None, C=0) -> int\n\n"
     "Adds a row block X (rows, d), float32 or float64, to the float64 sums s (d,) of\n"
     "x - shift and q (d,) of its squares, and with labels y (rows,) int64 in [0, C) its rows\n"
     "to S (C, d) float64 by class. Returns the flat index of the block's first non-finite\n"
     "entry where a column's sum became non-finite, else -1."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_column_sums",
                                    "The statistics' pass of a fit (see the C source).", -1,
                                    methods};

PyMODINIT_FUNC
PyInit__column_sums(void)
{
    return PyModule_Create(&module);
}
