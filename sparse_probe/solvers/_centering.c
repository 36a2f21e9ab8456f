/* Penalty-optimal centering of multinomial weights, one column at a time.
 *
 * For each column j of W (C, m), float64, C-contiguous, the shift c_j minimizes the elastic-net
 * penalty of the column moved by it (the loss cannot see such a shift):
 *
 *     min_c  alpha sum_k |w_kj + c| + (1 - alpha)/2 sum_k (w_kj + c)^2
 *
 * The derivative is piecewise linear and increasing, with kinks at c = -w_kj. With the kinks
 * sorted, b_0 <= ... <= b_{C-1}, and S = sum_k w_kj, the derivative just right of kink i is
 * alpha (2 (i + 1) - C) + (1 - alpha)(S + C b_i) and just left of it alpha (2 i - C) + the same
 * ridge term. The minimizer is the first kink whose right derivative is >= 0 where its left one
 * is <= 0, else the root of the linear piece left of that kink (alpha < 1), else 0. The shift is
 * kept only where it lowers the column's penalty by more than a 1e-12 share (so zero and
 * already centered columns stay exactly as they are). Up to SORT_MAX classes the kinks are
 * sorted and scanned; beyond, the first such kink is selected without sorting (first_right).
 *
 * The same steps, in the same floating-point order, as
 * sparse_probe.solvers.centering._center_shift_np (the numpy reference, ~30 array operations
 * per call; numpy sums a lone column pairwise, so there the last bits can differ); the
 * solvers call this once per iteration on their (C, m) weights.
 * Only the buffer protocol is used (no NumPy headers).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "_buffers.h"

/* A C-contiguous float64 buffer of `count` items (_buffers.h). */
static int
get(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t count, const char *name)
{
    return get_buffer(obj, view, writable, count, "d", "_centering.shifts", name, 0);
}

static int
ascending(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts b (C) ascending by insertion: the usual few classes. */
static void
sort(double *b, Py_ssize_t C)
{
    for (Py_ssize_t i = 1; i < C; i++) {
        double v = b[i];
        Py_ssize_t k = i - 1;
        for (; k >= 0 && b[k] > v; k--)
            b[k + 1] = b[k];
        b[k + 1] = v;
    }
}

/* Whether the derivative just right of the kink of rank i (value v) is >= 0 (header). One
 * function for the sorted scan and the selection, so both round it alike; as rounded it is
 * still nondecreasing in i and in v (each operation rounds monotonically). */
static inline int
right_ok(double alpha, double S, double dC, Py_ssize_t i, double v)
{
    double ridge = (1.0 - alpha) * (S + dC * v);
    return alpha * (2.0 * (double)(i + 1) - dC) + ridge >= 0.0;
}

static inline void
swap(double *b, Py_ssize_t i, Py_ssize_t j)
{
    double t = b[i];
    b[i] = b[j];
    b[j] = t;
}

static inline double
median3(double x, double y, double z)
{
    if (x > y) {
        double t = x;
        x = y;
        y = t;
    }
    return z <= x ? x : (z >= y ? y : z);
}

/* The first rank i (ascending order of the kinks b, C of them) with right_ok, C where there is
 * none, and the kink of rank i in *at (where i < C), without sorting: quickselect on ranks
 * (expected O(C) where the sort takes O(C log C)). Each round splits b[lo, hi) around a pivot
 * (three ways: <, ==, >), so b[lo, hi) always holds exactly the kinks of ranks lo .. hi - 1, and
 * right_ok is read at the pivot's lowest and highest rank; the answer lies in [lo, hi]. Since
 * right_ok is monotone, the rank found is the sorted scan's. After `rounds` rounds (a pivot
 * sequence that keeps missing: shifts() allows ROUNDS) the rest is sorted and scanned. */
#define ROUNDS 64
static Py_ssize_t
first_right(double *b, Py_ssize_t C, double alpha, double S, int rounds, double *at)
{
    double dC = (double)C;
    Py_ssize_t lo = 0, hi = C;
    double at_hi = 0.0; /* the kink of rank hi (none while hi = C) */
    for (int round = 0; lo < hi; round++) {
        if (round == rounds) {
            qsort(b + lo, (size_t)(hi - lo), sizeof(double), ascending);
            for (Py_ssize_t i = lo; i < hi; i++)
                if (right_ok(alpha, S, dC, i, b[i])) {
                    at_hi = b[i];
                    hi = i;
                    break;
                }
            break;
        }
        double p = median3(b[lo], b[lo + (hi - lo) / 2], b[hi - 1]);
        Py_ssize_t lt = lo, i = lo, gt = hi;
        while (i < gt) { /* b[lo, lt) < p, b[lt, i) == p, b[gt, hi) > p */
            if (b[i] < p)
                swap(b, lt++, i++);
            else if (b[i] > p)
                swap(b, i, --gt);
            else
                i++;
        }
        if (right_ok(alpha, S, dC, lt, p)) { /* at or left of the pivot's lowest rank */
            hi = lt;
            at_hi = p;
        }
        else if (right_ok(alpha, S, dC, gt - 1, p)) { /* among the pivot's own ranks */
            Py_ssize_t r = lt + 1;
            while (!right_ok(alpha, S, dC, r, p))
                r++;
            hi = r;
            at_hi = p;
            break;
        }
        else
            lo = gt;
    }
    *at = at_hi;
    return hi;
}

/* The column's penalty moved by c: alpha sum |w + c| + (1 - alpha)/2 sum (w + c)^2, each sum
 * accumulated over the classes in order (numpy's reduction over axis 0). */
static double
penalty(const double *W, Py_ssize_t C, Py_ssize_t m, Py_ssize_t j, double c, double alpha)
{
    double sq = 0.0, l1 = 0.0;
    for (Py_ssize_t k = 0; k < C; k++) {
        double v = W[k * m + j] + c;
        sq += v * v;
        l1 += fabs(v);
    }
    return alpha * l1 + 0.5 * (1.0 - alpha) * sq;
}

/* Above this many classes the kinks are selected (first_right), up to it sorted by insertion
 * and scanned (faster for a few). */
#define SORT_MAX 32

static double
shift(const double *W, Py_ssize_t C, Py_ssize_t m, Py_ssize_t j, double alpha, int rounds,
      double *b)
{
    double S = 0.0;
    for (Py_ssize_t k = 0; k < C; k++) {
        b[k] = -W[k * m + j];
        S += W[k * m + j];
    }
    double dC = (double)C;
    /* the first kink whose right derivative is >= 0, its rank istar and value bi; istar = C
     * (none) only where rounding makes the last kink's, alpha C + (1 - alpha) sum_k (w_k -
     * min_k w_k), negative */
    Py_ssize_t istar = C;
    double bi = 0.0;
    if (C > SORT_MAX)
        istar = first_right(b, C, alpha, S, rounds, &bi);
    else {
        sort(b, C);
        for (Py_ssize_t i = 0; i < C; i++)
            if (right_ok(alpha, S, dC, i, b[i])) {
                istar = i;
                bi = b[i];
                break;
            }
    }
    /* the minimum is that kink where the derivative just left of it is <= 0, else (alpha < 1)
     * the root of the linear piece left of it, else (alpha = 1, where the first case always
     * holds) no shift */
    int at_kink = istar < C &&
                  alpha * (2.0 * (double)istar - dC) + (1.0 - alpha) * (S + dC * bi) <= 0.0;
    double c = at_kink ? bi : 0.0;
    if (!at_kink && alpha < 1.0)
        c = -(alpha * (2.0 * (double)istar - dC) + (1.0 - alpha) * S) / ((1.0 - alpha) * dC);
    double before = penalty(W, C, m, j, 0.0, alpha);
    double after = penalty(W, C, m, j, c, alpha);
    return after < before * (1.0 - 1e-12) ? c : 0.0;
}

static PyObject *
shifts(PyObject *self, PyObject *args)
{
    PyObject *oW, *oout;
    Py_ssize_t C, m;
    double alpha;
    int rounds = ROUNDS;
    if (!PyArg_ParseTuple(args, "nnOdO|i:shifts", &C, &m, &oW, &alpha, &oout, &rounds))
        return NULL;
    if (C < 1 || m < 0) {
        PyErr_SetString(PyExc_ValueError, "_centering.shifts: need C >= 1 and m >= 0");
        return NULL;
    }
    if (!(alpha > 0.0 && alpha <= 1.0)) {
        PyErr_SetString(PyExc_ValueError, "_centering.shifts: need 0 < alpha <= 1");
        return NULL;
    }
    Py_buffer vW, vout;
    if (get(oW, &vW, 0, C * m, "W") < 0)
        return NULL;
    if (get(oout, &vout, 1, m, "out") < 0) {
        PyBuffer_Release(&vW);
        return NULL;
    }
    double *b = PyMem_RawMalloc((size_t)C * sizeof(double));
    if (!b) {
        PyBuffer_Release(&vW);
        PyBuffer_Release(&vout);
        return PyErr_NoMemory();
    }
    const double *W = vW.buf;
    double *out = vout.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < m; j++)
        out[j] = shift(W, C, m, j, alpha, rounds, b);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(b);
    PyBuffer_Release(&vW);
    PyBuffer_Release(&vout);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"shifts", shifts, METH_VARARGS,
     "shifts(C, m, W, alpha, out, rounds=64) -> None\n\n"
     "Per column of W (C, m) float64, the shift minimizing the elastic-net penalty (L1 share\n"
     "alpha) of the column moved by it, or 0 where it would not lower it; written to out (m,)\n"
     "float64. rounds: partition rounds of the selection (over 32 classes) before the rest\n"
     "is sorted (the same result; for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_centering",
                                    "Penalty-optimal centering of weight columns (see the C "
                                    "source).", -1, methods};

PyMODINIT_FUNC
PyInit__centering(void)
{
    return PyModule_Create(&module);
}
