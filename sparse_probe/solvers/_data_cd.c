/* Coordinate descent on the multinomial Newton model in data space: no Hessian is formed.
 *
 * The model of the mean cross-entropy at probabilities p_i (n examples, C classes), for a step
 * D on N chosen coordinates (a weight (k, j) of class k and feature j, or the bias of class k),
 *
 *     q(D) = a'D + 1/(2n) sum_i u_i' (diag(p_i) - p_i p_i') u_i,   u_ik = sum_{j} D_kj x_ij + D_bk,
 *
 * plus the elastic net l1 |w| + l2/2 w^2 on the weights w = w0 + D (biases unpenalized). The
 * gradient of q along coordinate (k, j) is a_kj + 1/n sum_i x_ij p_ik (u_ik - s_i) with
 * s_i = sum_k p_ik u_ik, and its curvature h_kj = 1/n sum_i x_ij^2 p_ik (1 - p_ik): keeping U
 * (C, n) and s (n) up to date, a coordinate's exact 1-D minimization costs two passes over the
 * n examples, where the Gram form (_gram_cd.c) needs the Hessian, n N^2 / 2 multiply-adds, and
 * reads N entries per coordinate. Where n is small against N (n << d working sets) that is the
 * cheaper model solve (sparse_probe.solvers.data_cd).
 *
 * The sweeps of sparse_probe.solvers.data_cd._sweeps_numpy (the reference, in Python), with
 * float64 sums over float32 features and probabilities. Only the buffer protocol is used
 * (no NumPy headers). The GIL is released during the sweeps.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "_buffers.h"

static const char *WHERE = "_data_cd.sweeps";

/* The minimum-norm subgradient's magnitude of coordinate c at w with model gradient g
 * (ridge included), L1 weight l1. */
static inline double
subgradient(double w, double g, double l1)
{
    if (w > 0)
        return fabs(g + l1);
    if (w < 0)
        return fabs(g - l1);
    double e = fabs(g) - l1;
    return e > 0 ? e : 0.0;
}

/* One pass over the coordinates listed in `order` (count entries); returns the largest
 * subgradient met (each read before its coordinate's update). */
CLONES static double
pass(Py_ssize_t n, const float *XT, const float *PT, double *UT, double *s,
     const long long *cls, const long long *col, const double *a, const double *h,
     const double *l1, const double *l2, double *w, const long long *order, Py_ssize_t count)
{
    const double inv_n = 1.0 / (double)n;
    double worst = 0.0;
    for (Py_ssize_t t = 0; t < count; t++) {
        Py_ssize_t c = (Py_ssize_t)order[t];
        const float *p = PT + cls[c] * n;
        double *u = UT + cls[c] * n;
        double dot = 0.0;
        if (col[c] >= 0) {
            const float *x = XT + col[c] * n;
#pragma omp simd reduction(+ : dot)
            for (Py_ssize_t i = 0; i < n; i++)
                dot += (double)x[i] * (double)p[i] * (u[i] - s[i]);
        } else {
#pragma omp simd reduction(+ : dot)
            for (Py_ssize_t i = 0; i < n; i++)
                dot += (double)p[i] * (u[i] - s[i]);
        }
        double wc = w[c], g = a[c] + inv_n * dot;
        double viol = subgradient(wc, g + l2[c] * wc, l1[c]);
        if (viol > worst || viol != viol)
            worst = viol;
        double den = h[c] + l2[c];
        if (!(den > 0))
            continue;
        double v = h[c] * wc - g, e = fabs(v) - l1[c];
        double nw = e > 0 ? copysign(e, v) / den : 0.0;
        double d = nw - wc;
        if (d == 0.0)
            continue;
        w[c] = nw;
        if (col[c] >= 0) {
            const float *x = XT + col[c] * n;
#pragma omp simd
            for (Py_ssize_t i = 0; i < n; i++) {
                double dx = d * (double)x[i];
                u[i] += dx;
                s[i] += dx * (double)p[i];
            }
        } else {
#pragma omp simd
            for (Py_ssize_t i = 0; i < n; i++) {
                u[i] += d;
                s[i] += d * (double)p[i];
            }
        }
    }
    return worst;
}

static PyObject *
sweeps(PyObject *self, PyObject *args)
{
    PyObject *oXT, *oPT, *oUT, *os, *ocls, *ocol, *oa, *oh, *ol1, *ol2, *ow, *oorder;
    Py_ssize_t n, count;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOnn", &oXT, &oPT, &oUT, &os, &ocls, &ocol, &oa, &oh,
                          &ol1, &ol2, &ow, &oorder, &n, &count))
        return NULL;
    if (n < 1 || count < 0) {
        PyErr_Format(PyExc_ValueError, "%s: n must be positive and count nonnegative", WHERE);
        return NULL;
    }
    Py_buffer b[12];
    for (int i = 0; i < 12; i++)
        b[i].obj = NULL;
    PyObject *result = NULL;
    if (get_buffer(oXT, &b[0], 0, -1, "f", WHERE, "XT", 0) < 0 ||
        get_buffer(oPT, &b[1], 0, -1, "f", WHERE, "PT", 0) < 0 ||
        get_buffer(oUT, &b[2], 1, b[1].len / 4, "d", WHERE, "UT", 0) < 0 ||
        get_buffer(os, &b[3], 1, n, "d", WHERE, "s", 0) < 0 ||
        get_buffer(ocls, &b[4], 0, -1, "q", WHERE, "cls", 0) < 0)
        goto done;
    Py_ssize_t N = b[4].len / 8;
    if (get_buffer(ocol, &b[5], 0, N, "q", WHERE, "col", 0) < 0 ||
        get_buffer(oa, &b[6], 0, N, "d", WHERE, "a", 0) < 0 ||
        get_buffer(oh, &b[7], 0, N, "d", WHERE, "h", 0) < 0 ||
        get_buffer(ol1, &b[8], 0, N, "d", WHERE, "l1", 0) < 0 ||
        get_buffer(ol2, &b[9], 0, N, "d", WHERE, "l2", 0) < 0 ||
        get_buffer(ow, &b[10], 1, N, "d", WHERE, "w", 0) < 0 ||
        get_buffer(oorder, &b[11], 0, -1, "q", WHERE, "order", 0) < 0)
        goto done;
    Py_ssize_t C = b[1].len / 4 / n, m = b[0].len / 4 / n, K = b[11].len / 8;
    if (C * n * 4 != b[1].len || m * n * 4 != b[0].len) {
        PyErr_Format(PyExc_ValueError, "%s: XT and PT must hold whole rows of n = %zd", WHERE, n);
        goto done;
    }
    const long long *cls = b[4].buf, *col = b[5].buf, *order = b[11].buf;
    for (Py_ssize_t c = 0; c < N; c++) {
        if (cls[c] < 0 || cls[c] >= C || col[c] < -1 || col[c] >= m) {
            PyErr_Format(PyExc_ValueError, "%s: coordinate %zd (class %lld, column %lld) is "
                         "outside C = %zd, m = %zd", WHERE, c, cls[c], col[c], C, m);
            goto done;
        }
    }
    for (Py_ssize_t t = 0; t < K; t++) {
        if (order[t] < 0 || order[t] >= N) {
            PyErr_Format(PyExc_ValueError, "%s: order[%zd] = %lld is outside N = %zd", WHERE,
                         t, order[t], N);
            goto done;
        }
    }
    double worst = 0.0;
    Py_ssize_t made = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; made < count; made++)
        worst = pass(n, b[0].buf, b[1].buf, b[2].buf, b[3].buf, cls, col, b[6].buf, b[7].buf,
                     b[8].buf, b[9].buf, b[10].buf, order, K);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("d", worst);
done:
    for (int i = 0; i < 12; i++)
        if (b[i].obj)
            PyBuffer_Release(&b[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"sweeps", sweeps, METH_VARARGS,
     "sweeps(XT, PT, UT, s, cls, col, a, h, l1, l2, w, order, n, count) -> violation\n\n"
     "count cyclic passes over the coordinates listed in order (int64 indices into the N\n"
     "coordinates), each an exact 1-D minimization of the data-space Newton model (module\n"
     "doc): XT (m, n) float32 features, PT (C, n) float32 probabilities, UT (C, n) and s (n)\n"
     "float64 kept up to date in place, cls/col (N,) int64 (col -1: a bias), a, h, l1, l2 (N,)\n"
     "float64, w (N,) float64 updated in place. Returns the largest minimum-norm subgradient\n"
     "met in the last pass (each read before its coordinate moved)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_data_cd",
                                    "Compiled data-space Newton-model coordinate descent "
                                    "(see data_cd.py).", -1, methods};

PyMODINIT_FUNC
PyInit__data_cd(void)
{
    return PyModule_Create(&module);
}
