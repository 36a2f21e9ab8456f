/* Cross-entropy and softmax residual of float64 logits, one pass over the rows.
 *
 * For each row i of z (n, C), optionally moved first (z_i + t dz_i + dz2_i, stored to zn; dz2 is
 * the correction of a line-search trial whose orthant projection clipped some weights, dense
 * (n, C) or given for a few classes only: (n, k) with their indices cls2 (k,)):
 *
 *     lse_i = m_i + log sum_k exp(z_ik - m_i)            m_i = max_k z_ik
 *     loss  = sum_i (lse_i - z_{i,y_i})
 *     R_ik  = scale (exp(z_ik - lse_i) - [k == y_i])     written as float64 and/or float32
 *     gb_k += sum_i R_ik                                 the bias gradient, in float64
 *
 * The same numbers as sparse_probe.solvers.restricted.softmax_residual (the torch reference,
 * which works in about ten passes over the (n, C) array, each of them a trip to memory);
 * here a row is read once and its temporaries stay in L1. Rows of up to LANE_MAX_C classes go
 * LANES at a time, transposed so that each step runs across rows (lanes(): a row of 2-31
 * classes is too short to fill a vector; 1.9-3.7x torch's speed there, 1.2-11x the row by
 * row route: benchmarks/measure_softmax_ce.py), longer rows one at a time (row()). exp is
 * evaluated by a polynomial that the compiler vectorizes (Cody-Waite reduction by ln 2,
 * degree-13 Taylor polynomial on |r| <= ln2/2: truncation below 5e-18 relative; arguments are
 * <= 0 after the row maximum is shifted out and clamped at -708, whose exp, 3e-308, is already
 * nothing beside the row's 1).
 *
 * Only the buffer protocol is used (no NumPy headers). The GIL is released during the rows, so
 * callers may run row blocks on several threads; built with OpenMP (setup.py), rows() runs
 * `threads` blocks itself, on the OpenMP team of the process (torch's: the module is loaded
 * after torch, and binds to the libgomp.so.1 it loaded), split and summed as the callers' blocks
 * are (fused_ce.py): the same bits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_buffers.h"

#define LOG2E 1.4426950408889634
#define LN2HI 6.93147180369123816490e-01
#define LN2LO 1.90821492927058770002e-10
#define SHIFT 6755399441055744.0 /* 1.5 * 2^52: adding it rounds to an integer */
#define FLOOR -708.0
#define LANES 32     /* rows per block of lanes() (8 and 16 were slower, 64 no faster) */
#define STAGED 16    /* rows row() writes to a scratch before they go to a (C, n) residual: 16
                        floats, a cache line, per class (a row's C floats n apart, each on a
                        page of its own at 1,000 classes, took the kernel 1.7-2.4x the time) */
#define LANE_MAX_C 31 /* rows of at most this many classes go through lanes() (from 32 on
                         row() was as fast or faster: benchmarks/measure_softmax_ce.py) */
#define LANE_MAX_C_T 255 /* the same for a transposed (C, n) residual, where lanes() writes each
                            class's rows as consecutive floats and row() needs a transposing
                            stage: across rows 0.99-1.37x the speed at 32-300 classes, 0.97x at
                            400, 0.76x at 1,000 (its scratch, 3 C LANES doubles, past L2;
                            benchmarks/measure_residual_layout.py --routes,
                            results/residual-lanes-cpu-2026-12-06.txt) */

/* exp(x) for x <= 0 (x < -708 is taken as -708). Branch-free so that loops of it vectorize. */
static inline double
exp_nonpos(double x)
{
    x = x < FLOOR ? FLOOR : x;
    union { double d; int64_t i; } kd, p;
    kd.d = x * LOG2E + SHIFT;
    double k = kd.d - SHIFT;
    double r = (x - k * LN2HI) - k * LN2LO;
    p.d = 1.0 / 6227020800.0; /* 1/13! */
    p.d = p.d * r + 1.0 / 479001600.0;
    p.d = p.d * r + 1.0 / 39916800.0;
    p.d = p.d * r + 1.0 / 3628800.0;
    p.d = p.d * r + 1.0 / 362880.0;
    p.d = p.d * r + 1.0 / 40320.0;
    p.d = p.d * r + 1.0 / 5040.0;
    p.d = p.d * r + 1.0 / 720.0;
    p.d = p.d * r + 1.0 / 120.0;
    p.d = p.d * r + 1.0 / 24.0;
    p.d = p.d * r + 1.0 / 6.0;
    p.d = p.d * r + 0.5;
    p.d = p.d * r + 1.0;
    p.d = p.d * r + 1.0;
    /* k is the low bits of kd's mantissa (two's complement below SHIFT): 2^k by the exponent */
    p.i += (int64_t)((uint64_t)(kd.i - 0x4338000000000000LL) << 52);
    return p.d;
}

/* sum_k e[k] over eight partial sums (a vector of them; a single sum is a serial chain). */
static inline double
sum(Py_ssize_t C, const double *restrict e)
{
    double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    Py_ssize_t k = 0;
    for (; k + 8 <= C; k += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += e[k + j];
    double s = 0.0;
    for (; k < C; k++)
        s += e[k];
    for (int j = 0; j < 8; j++)
        s += acc[j];
    return s;
}

/* One row: returns lse - z_y; writes zn (if any), R64/R32 (if any), adds the residual to gb. */
CLONES static double
row(Py_ssize_t C, const double *restrict z, const double *restrict dz64,
    const float *restrict dz32, double t, const float *restrict dz2,
    const int64_t *restrict cls2, Py_ssize_t k2, int64_t y,
    double *restrict zn, double *restrict e,
    double *restrict R64, float *restrict R32, double *restrict gb, double scale)
{
    if (dz64) {
        for (Py_ssize_t k = 0; k < C; k++)
            e[k] = z[k] + t * dz64[k];
    } else if (dz32) {
        for (Py_ssize_t k = 0; k < C; k++)
            e[k] = z[k] + t * (double)dz32[k];
    } else {
        memcpy(e, z, C * sizeof(double));
    }
    if (dz2 && cls2)
        for (Py_ssize_t j = 0; j < k2; j++)
            e[cls2[j]] += (double)dz2[j];
    else if (dz2)
        for (Py_ssize_t k = 0; k < C; k++)
            e[k] += (double)dz2[k];
    /* the moved logits out, the row maximum and the finiteness check: one pass */
    double zy = e[y], m = -INFINITY, finite = 0.0;
    if (zn) {
#pragma omp simd reduction(max : m) reduction(+ : finite)
        for (Py_ssize_t k = 0; k < C; k++) {
            zn[k] = e[k];
            m = e[k] > m ? e[k] : m;
            finite += e[k] - e[k]; /* NaN once any logit is infinite or NaN */
        }
    } else {
#pragma omp simd reduction(max : m) reduction(+ : finite)
        for (Py_ssize_t k = 0; k < C; k++) {
            m = e[k] > m ? e[k] : m;
            finite += e[k] - e[k];
        }
    }
    if (finite != 0.0) { /* such a row's loss and residual are NaN (the solvers reject them) */
        for (Py_ssize_t k = 0; k < C; k++) {
            if (R64)
                R64[k] = NAN;
            if (R32)
                R32[k] = NAN;
            gb[k] = NAN;
        }
        return NAN;
    }
    for (Py_ssize_t k = 0; k < C; k++)
        e[k] = exp_nonpos(e[k] - m);
    double s = sum(C, e);
    double lse = m + log(s), inv = scale / s;
    /* the residual out and into the bias sums: one pass (the true class corrected after) */
    double py = e[y] * inv;
    if (R32 && !R64) {
#pragma omp simd
        for (Py_ssize_t k = 0; k < C; k++) {
            double r = e[k] * inv;
            R32[k] = (float)r;
            gb[k] += r;
        }
    } else {
        for (Py_ssize_t k = 0; k < C; k++) {
            double r = e[k] * inv;
            if (R64)
                R64[k] = r;
            if (R32)
                R32[k] = (float)r;
            gb[k] += r;
        }
    }
    if (R64)
        R64[y] = py - scale;
    if (R32)
        R32[y] = (float)(py - scale);
    gb[y] -= scale;
    return lse - zy;
}

/* log(s) for 1 <= s < 2^1023, branch-free so that loops of it vectorize: s = 2^k f with
 * f in [sqrt(1/2), sqrt(2)), log f = 2 atanh(u) = 2 (u + u^3/3 + ... + u^21/21), u = (f-1)/(f+1),
 * |u| <= 0.172 (truncation below 3e-18 relative). f - 1 is exact, so s near 1 (a row whose
 * largest logit holds nearly all the mass) keeps its relative accuracy. */
static inline double
log_ge1(double s)
{
    union { double d; int64_t i; } b, e;
    b.d = s;
    /* the biased exponent as a double, by the 2^52 trick (no int64 -> double conversion) */
    e.i = (int64_t)(((uint64_t)b.i >> 52) | 0x4330000000000000ULL);
    double k = e.d - 4503599627370496.0 - 1023.0;
    b.i = (int64_t)(((uint64_t)b.i & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL); /* [1, 2) */
    double f = b.d;
    double big = f > 1.4142135623730951 ? 1.0 : 0.0;
    f = f * (1.0 - 0.5 * big); /* exact: halving */
    k += big;
    double u = (f - 1.0) / (f + 1.0), u2 = u * u;
    double p = 1.0 / 21.0;
    p = p * u2 + 1.0 / 19.0;
    p = p * u2 + 1.0 / 17.0;
    p = p * u2 + 1.0 / 15.0;
    p = p * u2 + 1.0 / 13.0;
    p = p * u2 + 1.0 / 11.0;
    p = p * u2 + 1.0 / 9.0;
    p = p * u2 + 1.0 / 7.0;
    p = p * u2 + 1.0 / 5.0;
    p = p * u2 + 1.0 / 3.0;
    double tu = 2.0 * u;
    return k * LN2HI + (tu + (tu * u2 * p + k * LN2LO));
}

/* Up to LANES rows of few classes at once, transposed into e (C, LANES) so that every step
 * runs across rows in vector registers (row() goes along a row: too short here). Lanes
 * nr..LANES-1 hold zeros and are masked out of the sums. mv (LANES, C): scratch for the
 * moved logits where zn is not given. gbv (C, LANES) accumulates the
 * residual's column sums lane by lane (summed over lanes once, at the end). R32: row r's
 * class k at r * rs + k * cs ((n, C): rs = C, cs = 1; (C, n): rs = 1, cs = n). Same outputs
 * as row() for each row, up to rounding (log_ge1 for libm's log). */
CLONES static double
lanes(Py_ssize_t nr, Py_ssize_t C, const double *restrict z, const double *restrict dz64,
      const float *restrict dz32, double t, const float *restrict dz2,
      const int64_t *restrict cls2, Py_ssize_t k2, const int64_t *restrict y,
      double *restrict zn, double *restrict e, double *restrict mv, double *restrict R64,
      float *restrict R32, Py_ssize_t rs, Py_ssize_t cs, double *restrict gbv, double scale)
{
    double m[LANES], s[LANES], so[LANES], inv[LANES], zy[LANES], yl[LANES], bad[LANES];
    if (dz64 || dz32 || dz2) { /* the moved logits along the rows first (contiguous, into
                                  zn or the scratch mv), then read back transposed */
        double *out = zn ? zn : mv;
        Py_ssize_t len = nr * C;
        if (dz64) {
#pragma omp simd
            for (Py_ssize_t j = 0; j < len; j++)
                out[j] = z[j] + t * dz64[j];
        } else if (dz32) {
#pragma omp simd
            for (Py_ssize_t j = 0; j < len; j++)
                out[j] = z[j] + t * (double)dz32[j];
        } else {
            memcpy(out, z, len * sizeof(double));
        }
        if (dz2 && cls2)
            for (Py_ssize_t r = 0; r < nr; r++)
                for (Py_ssize_t j = 0; j < k2; j++)
                    out[r * C + cls2[j]] += (double)dz2[r * k2 + j];
        else if (dz2)
#pragma omp simd
            for (Py_ssize_t j = 0; j < len; j++)
                out[j] += (double)dz2[j];
        z = out;
    } else if (zn) {
        memcpy(zn, z, nr * C * sizeof(double));
    }
    for (Py_ssize_t r = 0; r < LANES; r++) {
        for (Py_ssize_t k = 0; k < C; k++)
            e[k * LANES + r] = r < nr ? z[r * C + k] : 0.0;
        zy[r] = r < nr ? e[y[r] * LANES + r] : 0.0;
        yl[r] = r < nr ? (double)y[r] : -1.0;
    }
    for (int r = 0; r < LANES; r++) {
        m[r] = -INFINITY;
        bad[r] = 0.0;
    }
    for (Py_ssize_t k = 0; k < C; k++)
#pragma omp simd
        for (int r = 0; r < LANES; r++) {
            double v = e[k * LANES + r];
            m[r] = v > m[r] ? v : m[r];
            bad[r] += v - v; /* NaN once any logit of the row is infinite or NaN */
        }
    int any_bad = 0;
    for (int r = 0; r < LANES; r++)
        any_bad |= bad[r] != 0.0;
    if (any_bad) /* such rows' outputs are NaN (set below); zeros keep the others' lanes clean */
        for (int r = 0; r < LANES; r++)
            if (bad[r] != 0.0) {
                m[r] = 0.0;
                for (Py_ssize_t k = 0; k < C; k++)
                    e[k * LANES + r] = 0.0;
            }
    /* s: the row's sum; so: the other classes' share, so that the true class's residual
     * scale (p_y - 1) = -scale so / s keeps its relative accuracy as p_y nears 1 (the
     * difference p_y - 1 would keep an absolute one) */
    for (int r = 0; r < LANES; r++) {
        s[r] = 0.0;
        so[r] = 0.0;
    }
    for (Py_ssize_t k = 0; k < C; k++)
#pragma omp simd
        for (int r = 0; r < LANES; r++) {
            double v = exp_nonpos(e[k * LANES + r] - m[r]);
            e[k * LANES + r] = v;
            s[r] += v;
            so[r] += yl[r] == (double)k ? 0.0 : v;
        }
    double loss = 0.0;
#pragma omp simd reduction(+ : loss)
    for (int r = 0; r < LANES; r++) {
        /* CE = log s - (z_y - m): 0 + log s where the true class is the maximum */
        double ce = (m[r] - zy[r]) + log_ge1(s[r]);
        inv[r] = r < nr ? scale / s[r] : 0.0; /* padding lanes add nothing to the sums */
        loss += r < nr ? ce : 0.0;
    }
    for (Py_ssize_t k = 0; k < C; k++)
#pragma omp simd
        for (int r = 0; r < LANES; r++) {
            double v = yl[r] == (double)k ? -so[r] * inv[r] : e[k * LANES + r] * inv[r];
            e[k * LANES + r] = v;
            gbv[k * LANES + r] += v;
        }
    for (Py_ssize_t r = 0; r < nr && R64; r++)
        for (Py_ssize_t k = 0; k < C; k++)
            R64[r * C + k] = e[k * LANES + r];
    if (R32 && cs == 1)
        for (Py_ssize_t r = 0; r < nr; r++)
            for (Py_ssize_t k = 0; k < C; k++)
                R32[r * rs + k] = (float)e[k * LANES + r];
    else if (R32) /* (C, n): each class's lanes are consecutive floats */
        for (Py_ssize_t k = 0; k < C; k++)
            for (Py_ssize_t r = 0; r < nr; r++)
                R32[k * cs + r * rs] = (float)e[k * LANES + r];
    if (any_bad)
        for (Py_ssize_t r = 0; r < nr; r++)
            if (bad[r] != 0.0) {
                for (Py_ssize_t k = 0; k < C; k++) {
                    if (R64)
                        R64[r * C + k] = NAN;
                    if (R32)
                        R32[r * rs + k * cs] = NAN;
                    gbv[k * LANES + r] = NAN;
                }
                loss = NAN;
            }
    return loss;
}

/* Rows [0, n) of one block (the arrays start at its first row): lanes() or row() over them;
 * adds the residual's column sums to gb; e: scratch of (by_lanes ? 3 LANES : 1 + STAGED / 2) C
 * doubles. ld: 0 where R32 is (n, C); else R32 is (C, ld), the block's rows from its first
 * column (row() writes STAGED rows to the scratch, then each class's STAGED floats at once). */
static double
block(int by_lanes, Py_ssize_t n, Py_ssize_t C, const double *z, const double *d64,
      const float *d32, double t, const float *dz2, const int64_t *cls2, Py_ssize_t k2,
      const int64_t *y, double *zn, double *R64, float *R32, Py_ssize_t ld, double *gb,
      double scale, double *e)
{
    Py_ssize_t rs = ld ? 1 : C, cs = ld ? ld : 1; /* R32's strides: a row, a class */
    double loss = 0.0;
    if (by_lanes) {
        double *gbv = e + LANES * C, *mv = e + 2 * LANES * C;
        memset(gbv, 0, LANES * C * sizeof(double));
        for (Py_ssize_t i = 0; i < n; i += LANES) {
            Py_ssize_t o = i * C, nr = n - i < LANES ? n - i : LANES;
            loss += lanes(nr, C, z + o, d64 ? d64 + o : NULL, d32 ? d32 + o : NULL, t,
                          dz2 ? dz2 + i * k2 : NULL, cls2, k2, y + i, zn ? zn + o : NULL, e,
                          mv, R64 ? R64 + o : NULL, R32 ? R32 + i * rs : NULL, rs, cs, gbv,
                          scale);
        }
        for (Py_ssize_t k = 0; k < C; k++) {
            double acc = 0.0;
            for (int r = 0; r < LANES; r++)
                acc += gbv[k * LANES + r];
            gb[k] += acc;
        }
    } else {
        float *stage = ld && R32 ? (float *)(e + C) : NULL; /* (STAGED, C) rows, row-major */
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t o = i * C;
            float *r32 = stage ? stage + (i % STAGED) * C : R32 ? R32 + i * rs : NULL;
            loss += row(C, z + o, d64 ? d64 + o : NULL, d32 ? d32 + o : NULL, t,
                        dz2 ? dz2 + i * k2 : NULL, cls2, k2, y[i], zn ? zn + o : NULL, e,
                        R64 ? R64 + o : NULL, r32, gb, scale);
            if (stage && (i % STAGED == STAGED - 1 || i == n - 1)) {
                Py_ssize_t i0 = i - i % STAGED, nr = i - i0 + 1;
                for (Py_ssize_t k = 0; k < C; k++)
                    for (Py_ssize_t r = 0; r < nr; r++)
                        R32[k * cs + i0 + r] = stage[r * C + k];
            }
        }
    }
    return loss;
}

/* "_softmax_ce.rows" names the function in its arguments' errors (_buffers.h) */
static int
get(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t count, const char *fmt,
    const char *name, int may_be_none)
{
    return get_buffer(obj, view, writable, count, fmt, "_softmax_ce.rows", name, may_be_none);
}

#define NVIEWS 9 /* the buffers rows() reads or writes */

static void
release(Py_buffer *views, int count)
{
    for (int i = 0; i < count; i++)
        if (views[i].obj)
            PyBuffer_Release(&views[i]);
}

static PyObject *
rows(PyObject *self, PyObject *args)
{
    PyObject *oz, *odz, *odz2, *ocls2, *oy, *ozn, *oR64, *oR32, *ogb;
    double t, scale;
    Py_ssize_t n, C;
    int route = -1, threads = 1;
    Py_ssize_t ld = 0;
    if (!PyArg_ParseTuple(args, "nnOOdOOOOOOOd|iin:rows", &n, &C, &oz, &odz, &t, &odz2, &ocls2,
                          &oy, &ozn, &oR64, &oR32, &ogb, &scale, &route, &threads, &ld))
        return NULL;
    if (n < 0 || C < 1) {
        PyErr_SetString(PyExc_ValueError, "_softmax_ce.rows: need n >= 0 and C >= 1");
        return NULL;
    }
    if (ld != 0 && ld < n) {
        PyErr_Format(PyExc_ValueError, "_softmax_ce.rows: R32's leading dimension %zd is below "
                     "n = %zd", ld, n);
        return NULL;
    }
    Py_buffer v[NVIEWS]; /* z, dz, y, zn, R64, R32, gb, dz2, cls2 */
    memset(v, 0, sizeof(v));
    int dz32 = 0;
    if (odz != Py_None) { /* dz's item size says which format get() asks of it */
        Py_buffer probe;
        if (PyObject_GetBuffer(odz, &probe, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            PyErr_Clear(); /* get() below names what dz must be */
        } else {
            dz32 = probe.itemsize == 4;
            PyBuffer_Release(&probe);
        }
    }
    if (get(oz, &v[0], 0, n * C, "d", "z", 0) < 0
        || get(odz, &v[1], 0, n * C, dz32 ? "f" : "d", "dz", 1) < 0
        || get(oy, &v[2], 0, n, "q", "y", 0) < 0
        || get(ozn, &v[3], 1, n * C, "d", "zn", 1) < 0
        || get(oR64, &v[4], 1, n * C, "d", "R64", 1) < 0
        || get(oR32, &v[5], 1, ld ? (C - 1) * ld + n : n * C, "f", "R32", 1) < 0
        || get(ogb, &v[6], 1, C, "d", "gb", 0) < 0
        || get(ocls2, &v[8], 0, -1, "q", "cls2", 1) < 0) {
        release(v, NVIEWS);
        return NULL;
    }
    Py_ssize_t k2 = v[8].obj ? v[8].len / 8 : C; /* the classes dz2 holds */
    const int64_t *cls2 = v[8].buf;
    for (Py_ssize_t j = 0; cls2 && j < k2; j++)
        if (cls2[j] < 0 || cls2[j] >= C) {
            release(v, NVIEWS);
            PyErr_Format(PyExc_ValueError, "_softmax_ce.rows: class %lld of cls2 is not in "
                         "[0, %zd)", (long long)cls2[j], C);
            return NULL;
        }
    if (get(odz2, &v[7], 0, n * k2, "f", "dz2", 1) < 0) {
        release(v, NVIEWS);
        return NULL;
    }
    const int64_t *y = v[2].buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= C) {
            release(v, NVIEWS);
            PyErr_Format(PyExc_ValueError, "_softmax_ce.rows: label %lld of row %zd is not in "
                         "[0, %zd)", (long long)y[i], i, C);
            return NULL;
        }
    int by_lanes = route < 0 ? C <= (ld ? LANE_MAX_C_T : LANE_MAX_C) : route > 0;
#ifdef _OPENMP
    int k = threads < 1 ? 1 : (Py_ssize_t)threads > n ? (n > 0 ? (int)n : 1) : threads;
#else
    int k = 1;
#endif
    /* doubles of scratch per block, then of its column sums: whole cache lines apart (a line
     * that two threads write to goes back and forth between their cores on every row) */
    Py_ssize_t scratch = ((by_lanes ? 3 * LANES : 1 + (ld ? STAGED / 2 : 0)) * C + 15) / 8 * 8,
               stride = (C + 15) / 8 * 8;
    double *e = PyMem_RawCalloc((size_t)k * (scratch + stride + 1), sizeof(double));
    if (!e) {
        release(v, NVIEWS);
        return PyErr_NoMemory();
    }
    const double *z = v[0].buf;
    const double *d64 = dz32 ? NULL : v[1].buf;
    const float *d32 = dz32 ? v[1].buf : NULL;
    double *zn = v[3].buf, *R64 = v[4].buf, *gb = v[6].buf;
    float *R32 = v[5].buf;
    const float *dz2 = v[7].buf; /* NULL: no correction; no classes (k2 = 0): nothing to add */
    double loss = 0.0;
    Py_BEGIN_ALLOW_THREADS
    if (k == 1) {
        loss = block(by_lanes, n, C, z, d64, d32, t, dz2, cls2, k2, y, zn, R64, R32, ld, gb, scale,
                     e);
    } else {
        double *sums = e + (size_t)k * scratch, *losses = sums + (size_t)k * stride;
#ifdef _OPENMP
#pragma omp parallel for num_threads(k) schedule(static, 1)
#endif
        for (int j = 0; j < k; j++) {
            Py_ssize_t s = n * j / k, o = s * C, len = n * (j + 1) / k - s;
            losses[j] = block(by_lanes, len, C, z + o, d64 ? d64 + o : NULL, d32 ? d32 + o : NULL,
                              t, dz2 ? dz2 + s * k2 : NULL, cls2, k2, y + s, zn ? zn + o : NULL,
                              R64 ? R64 + o : NULL, R32 ? R32 + (ld ? s : o) : NULL, ld,
                              sums + (size_t)j * stride, scale, e + (size_t)j * scratch);
        }
        /* the first block's loss plus the others' (in order), each class's sums likewise */
        double rest = 0.0;
        for (int j = 1; j < k; j++)
            rest += losses[j];
        loss = losses[0] + rest;
        for (Py_ssize_t c = 0; c < C; c++) {
            double acc = sums[c];
            for (int j = 1; j < k; j++)
                acc += sums[(size_t)j * stride + c];
            gb[c] += acc;
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(e);
    release(v, NVIEWS);
    return PyFloat_FromDouble(loss);
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS,
     "rows(n, C, z, dz, t, dz2, cls2, y, zn, R64, R32, gb, scale[, route[, threads[, ld]]])\n"
     "    -> loss_sum\n\n"
     "Summed cross-entropy of the logits z + t dz + dz2 (n, C) float64 (dz: float64, float32\n"
     "or None; dz2: float32 (n, C), or (n, k) for the classes cls2 (k,) int64, or None)\n"
     "with labels y (n,) int64; writes the moved logits to zn, the residual\n"
     "scale * (softmax - onehot) to R64 (float64) and/or R32 (float32) (each may be None),\n"
     "and adds the residual's column sums to gb (C,) float64. route (optional): -1 picks by\n"
     "C (the default: across rows up to LANE_MAX_C classes, LANE_MAX_C_T for a transposed\n"
     "R32), 0 goes along rows, 1 across rows in lanes (for tests and timing).\n"
     "threads (optional, default 1): row blocks run on that many OpenMP threads (at most one\n"
     "per row; one where the module was built without OpenMP: see OPENMP). ld (optional,\n"
     "default 0): where > 0, R32 holds the residual transposed, (C, ld) with ld >= n, row i\n"
     "in column i (the layout of a (C, n) product's left operand)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_softmax_ce",
                                    "Fused softmax cross-entropy rows (see the C source).", -1,
                                    methods};

PyMODINIT_FUNC
PyInit__softmax_ce(void)
{
    PyObject *mod = PyModule_Create(&module);
    if (mod && (PyModule_AddIntConstant(mod, "LANE_MAX_C", LANE_MAX_C) < 0
                || PyModule_AddIntConstant(mod, "LANE_MAX_C_T", LANE_MAX_C_T) < 0
                || PyModule_AddIntConstant(mod, "LANES", LANES) < 0
#ifdef _OPENMP
                || PyModule_AddIntConstant(mod, "OPENMP", 1) < 0
#else
                || PyModule_AddIntConstant(mod, "OPENMP", 0) < 0
#endif
                )) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
