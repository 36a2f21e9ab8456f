/* Cyclic coordinate descent for an elastic-net quadratic program given by its Gram matrix.
 *
 *     min_u  1/2 u'Qu - q'u + l1 sum_j |u_j| + l2/2 ||u||^2
 *
 * The sweeps of sparse_probe.solvers.gram_cd._cd_numpy (the reference, in Python), compiled:
 * exact 1-D minimization per coordinate, glmnet's covariance form Qu kept up to date with one
 * axpy per changed coordinate. Unlike scikit-learn's enet_coordinate_descent_gram, which it
 * replaces in the proximal Newton solver, Qu is the caller's and lives across calls (no N^2
 * product per call), and the violation is read off that Qu after every sweep (O(N), no N^2
 * product per check), the sweeps stopping at the caller's tolerance: a sweep costs only the
 * axpys of the coordinates that move.
 *
 * Only the buffer protocol is used (no NumPy headers): every array must be C-contiguous
 * float64 of the stated size. The GIL is released during the sweeps.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

static int
get_f64(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t n, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@')
        f++;
    if (view->itemsize != 8 || strcmp(f, "d") != 0 || view->len != n * 8) {
        PyErr_Format(PyExc_ValueError,
                     "_gram_cd.sweeps: %s must be a C-contiguous float64 array of %zd entries",
                     name, n);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* y += a x (restrict: y is no row of Q, so the loop vectorizes). */
static void
axpy(Py_ssize_t n, double a, const double *restrict x, double *restrict y)
{
    for (Py_ssize_t k = 0; k < n; k++)
        y[k] += a * x[k];
}

/* Largest entry of the minimum-norm subgradient, from Qu (gram_cd.qp_violation). */
static double
violation(const double *u, const double *Qu, const double *q, double l1, double l2, Py_ssize_t N)
{
    double worst = 0.0;
    for (Py_ssize_t j = 0; j < N; j++) {
        double g = Qu[j] - q[j] + l2 * u[j], pg;
        if (u[j] > 0)
            pg = g + l1;
        else if (u[j] < 0)
            pg = g - l1;
        else {
            pg = fabs(g) - l1;
            if (pg < 0)  /* not for a NaN */
                pg = 0.0;
        }
        pg = fabs(pg);
        if (pg > worst || pg != pg)  /* a NaN is reported, not hidden */
            worst = pg;
    }
    return worst;
}

static PyObject *
sweeps(PyObject *self, PyObject *args)
{
    PyObject *ou, *oQu, *oQ, *oq;
    double l1, l2, tol;
    Py_ssize_t count, made = 0;
    if (!PyArg_ParseTuple(args, "OOOOddnd:sweeps", &ou, &oQu, &oQ, &oq, &l1, &l2, &count, &tol))
        return NULL;
    Py_buffer bu, bQu, bQ, bq;
    if (PyObject_GetBuffer(ou, &bu, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
        return NULL;
    Py_ssize_t N = bu.itemsize > 0 ? bu.len / bu.itemsize : 0;  /* entries, of any type */
    PyBuffer_Release(&bu);
    if (get_f64(ou, &bu, 1, N, "u") < 0)
        return NULL;
    if (get_f64(oQu, &bQu, 1, N, "Qu") < 0) {
        PyBuffer_Release(&bu);
        return NULL;
    }
    if (get_f64(oQ, &bQ, 0, N * N, "Q") < 0) {
        PyBuffer_Release(&bu);
        PyBuffer_Release(&bQu);
        return NULL;
    }
    if (get_f64(oq, &bq, 0, N, "q") < 0) {
        PyBuffer_Release(&bu);
        PyBuffer_Release(&bQu);
        PyBuffer_Release(&bQ);
        return NULL;
    }
    double *u = (double *)bu.buf, *Qu = (double *)bQu.buf;
    const double *Q = (const double *)bQ.buf, *q = (const double *)bq.buf;
    double worst = violation(u, Qu, q, l1, l2, N);
    Py_BEGIN_ALLOW_THREADS
    while (made < count && !(worst <= tol)) {
        for (Py_ssize_t j = 0; j < N; j++) {
            const double *Qj = Q + j * N;  /* row j = column j (Q symmetric) */
            double a = Qj[j] + l2;
            if (!(a > 0))
                continue;
            double uj = u[j];
            double v = q[j] - Qu[j] + (a - l2) * uj;
            double excess = fabs(v) - l1;
            /* a NaN passes through, as in the numpy loop, and is reported below */
            double nu = (excess > 0 || excess != excess) ? copysign(excess, v) / a : 0.0;
            if (nu != uj) {
                axpy(N, nu - uj, Qj, Qu);
                u[j] = nu;
            }
        }
        made++;
        worst = violation(u, Qu, q, l1, l2, N);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&bu);
    PyBuffer_Release(&bQu);
    PyBuffer_Release(&bQ);
    PyBuffer_Release(&bq);
    return Py_BuildValue("(dn)", worst, made);
}

static PyMethodDef methods[] = {
    {"sweeps", sweeps, METH_VARARGS,
     "sweeps(u, Qu, Q, q, l1, l2, count, tol) -> (violation, made)\n\n"
     "Cyclic coordinate-descent passes over u (in place), keeping Qu = Q @ u up to date\n"
     "(in place; the caller sets it first), until the violation (the largest entry of the\n"
     "minimum-norm subgradient, read off Qu after each pass) is at most tol or count passes\n"
     "are made. Returns that violation and the passes made (0 where u already meets tol)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gram_cd",
                                    "Compiled Gram coordinate descent (see gram_cd.py).", -1,
                                    methods};

PyMODINIT_FUNC
PyInit__gram_cd(void)
{
    return PyModule_Create(&module);
}
