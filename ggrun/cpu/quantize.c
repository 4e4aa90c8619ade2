/*
 * ggrun CPU quantizers: float32 rows -> ggml blocks, byte-identical to llama.cpp's reference
 * quantizers (quantize_row_*_ref in ggml-quants.c without an importance matrix: what
 * llama-quantize writes): Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K, and F16 / BF16 / F32
 * (ggml_fp32_to_fp16_row / ggml_fp32_to_bf16_row_ref / memcpy).
 *
 * Exactness: every float operation is the one ggml's C code performs, on the same operands, in
 * the same order.  The library is built with -ffp-contract=off and without -ffast-math, so the
 * compiler neither fuses a*b+c into an fma nor reorders a sum; C's `a*b*c` is `(a*b)*c` and an
 * int operand is converted to float first, exactly as in ggml.
 *
 * Speed: the k-quant scale searches (make_qkx2_quants, make_qx_quants, make_q3_quants) are long
 * chains of dependent float adds (`s += ...` over a group, 16-21 trial scales).  Here they run
 * on NL = 16 groups at once, one group per SIMD lane (GCC vector extensions): lane g performs
 * exactly the scalar code's sequence of IEEE operations for group g, so its bits are the same,
 * while 16 chains advance per instruction.  Branches become per-lane selects; where the scalar
 * code returns early for a group, the lane computes on and its results are replaced at the end
 * by what the scalar code returns.
 *
 * Entry point: gg_quantize(type, x, src_type, nrows, n_per_row, out, nthreads); x may be F32, F16
 * or BF16 (converted exactly, a few blocks at a time); the blocks of all rows are split over
 * nthreads pthreads (blocks are independent, so the split changes no byte).
 */
#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

#define QK_K 256
#define GROUP_MAX_EPS 1e-15f
#define QMIN(a, b) ((a) < (b) ? (a) : (b))
#define QMAX(a, b) ((a) > (b) ? (a) : (b))

/* ===== Scalar helpers: ggml's float idioms ===== */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }   /* little-endian hosts */

/* ggml's nearest_int: v + 1.5*2^23 rounds v to an integer (half to even) in the low mantissa
 * bits, read back as an int; defined (if meaningless) for any input, like ggml's. */
static inline int nearest_int(float v) {
    const float t = v + 12582912.f;
    return (int)(f2u(t) & 0x007fffff) - 0x00400000;
}

/* GGML_FP32_TO_FP16 (ggml_compute_fp32_to_fp16, the portable reference): round to nearest
 * even, overflow to inf, NaN -> sign | 0x7E00.  The scaling by 2^112 * 2^-110 and the bias add
 * make the FPU do the rounding of the mantissa. */
static inline uint16_t fp32_to_fp16(float f) {
    float base = (fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = f2u(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = u2f((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f2u(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

/* GGML_FP16_TO_FP32 (ggml_compute_fp16_to_fp32): exact; normals by rebiasing the exponent with a
 * multiply by 2^-112, subnormals by a magic-number subtraction */
static inline float fp16_to_fp32(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16, sign = w & 0x80000000u, two_w = w + w;
    const float normalized = u2f((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = u2f((two_w >> 17) | (126u << 23)) - 0.5f;
    return u2f(sign | (two_w < (1u << 27) ? f2u(denormalized) : f2u(normalized)));
}

/* ggml_compute_fp32_to_bf16: round to nearest even, NaN made quiet */
static inline uint16_t fp32_to_bf16(float s) {
    const uint32_t u = f2u(s);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

/* ===== 16-lane vectors: one group of a k-quant super-block per lane ===== */

#define NL 16
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"   /* 64-byte vectors in static functions: no ABI at stake */
#endif
typedef float vf __attribute__((vector_size(NL * 4)));
typedef int32_t vi __attribute__((vector_size(NL * 4)));

static inline vf vsel(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }   /* m ? a : b */
static inline vf vabs(vf v) { return (vf)((vi)v & 0x7fffffff); }
static inline int vany(vi m) { int r = 0; for (int g = 0; g < NL; ++g) r |= m[g]; return r != 0; }

/* MAX(lo, MIN(hi, nearest_int(v))) per lane, as float (exact small integers) */
static inline vf vlevel(vf v, int lo, int hi) {
    vi l = ((vi)(v + 12582912.f) & 0x007fffff) - 0x00400000;
    vi m = l > hi;
    l = (m & hi) | (~m & l);
    m = l < lo;
    l = (m & lo) | (~m & l);
    return __builtin_convertvector(l, vf);
}

/* t[i][g] = element i of group g, groups of n floats at src + g*n; lanes >= ng repeat group 0
 * (their results are ignored). (NL groups, n) -> (n, NL) */
static void load_t(const float *src, int ng, int n, vf *t) {
    for (int g = 0; g < NL; ++g) {
        const float *p = src + (g < ng ? g : 0) * n;
        for (int i = 0; i < n; ++i) t[i][g] = p[i];
    }
}

/*
 * make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad) for NL
 * groups: x[i] / w[i] = element i / weight i of every group (n <= 32).  Returns in L[i] the
 * levels (0..nmax, as float), in *scale_out the scale and in *min_out the_min (x ~ scale*L - the_min).
 */
static void qkx2_batch(int n, int nmax, const vf *x, const vf *w, vf *L, vf *scale_out, vf *min_out,
                       float rmin, float rdelta, int nstep, int use_mad) {
    const vf zero = {0};
    vf mn = x[0], mx = x[0];
    vf sum_w = w[0];
    vf sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        mn = vsel(x[i] < mn, x[i], mn);                   /* if (x[i] < min) min = x[i] */
        mx = vsel(x[i] > mx, x[i], mx);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    mn = vsel(mn > zero, zero, mn);                       /* if (min > 0) min = 0 */
    const vi degen = mx == mn;                            /* C: all L = 0, the_min = -min, return 0 */
    const vf mn0 = mn;
    vf iscale = (float)nmax / (mx - mn);
    vf scale = 1.0f / iscale;
    vf best = zero;
    for (int i = 0; i < n; ++i) {
        L[i] = vlevel(iscale * (x[i] - mn), 0, nmax);
        vf diff = scale * L[i] + mn - x[i];
        diff = use_mad ? vabs(diff) : diff * diff;
        best += w[i] * diff;
    }
    vf Laux[32];
    for (int is = 0; is <= nstep; ++is) {
        const float num = rmin + rdelta * is + nmax;      /* same float ops as C's expression */
        iscale = num / (mx - mn);
        vf sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; ++i) {
            const vf l = vlevel(iscale * (x[i] - mn), 0, nmax);
            Laux[i] = l;
            const vf wl = w[i] * l;
            sum_l += wl;                                  /* w*l */
            sum_l2 += wl * l;                             /* w*l*l */
            sum_xl += wl * x[i];                          /* w*l*x[i] */
        }
        const vf D = sum_w * sum_l2 - sum_l * sum_l;
        vf this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        vf this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        const vi pos = this_min > zero;                   /* this_min = 0; this_scale = sum_xl/sum_l2 */
        this_min = vsel(pos, zero, this_min);
        this_scale = vsel(pos, sum_xl / sum_l2, this_scale);
        vf cur = zero;
        for (int i = 0; i < n; ++i) {
            vf diff = this_scale * Laux[i] + this_min - x[i];
            diff = use_mad ? vabs(diff) : diff * diff;
            cur += w[i] * diff;
        }
        const vi upd = (D > zero) & (cur < best);         /* if (D > 0) ... if (cur_error < best_error) */
        if (!vany(upd)) continue;
        for (int i = 0; i < n; ++i) L[i] = vsel(upd, Laux[i], L[i]);
        best = vsel(upd, cur, best);
        scale = vsel(upd, this_scale, scale);
        mn = vsel(upd, this_min, mn);
    }
    for (int i = 0; i < n; ++i) L[i] = vsel(degen, zero, L[i]);
    *scale_out = vsel(degen, zero, scale);
    *min_out = -vsel(degen, mn0, mn);
}

/*
 * The start shared by make_qx_quants (rmse_type 1) and make_q3_quants (do_rmse) for NL groups of
 * n <= 16: max = the first value of largest |x| (``if (ax > amax) { amax = ax; max = x[i]; }``),
 * iscale = -nmax / max, L[i] = MAX(-nmax, MIN(nmax-1, nearest_int(iscale*x[i]))), w = x*x,
 * sumlx = sum w*x[i]*l, suml2 = sum w*l*l.  Returns the lanes whose group is all zero (amax < eps).
 */
static vi qx_start(int n, int nmax, const vf *x, vf *L, vf *w, vf *wx, vf *mx, vf *sumlx, vf *suml2) {
    const vf zero = {0};
    vf amax = zero, m = zero, slx = zero, sl2 = zero;
    for (int i = 0; i < n; ++i) {
        const vf ax = vabs(x[i]);
        const vi gt = ax > amax;
        amax = vsel(gt, ax, amax);
        m = vsel(gt, x[i], m);
    }
    const vf iscale = (float)(-nmax) / m;                 /* -nmax / max */
    for (int i = 0; i < n; ++i) {
        L[i] = vlevel(iscale * x[i], -nmax, nmax - 1);
        w[i] = x[i] * x[i];
        wx[i] = w[i] * x[i];
        slx += wx[i] * L[i];                              /* w*x[i]*l */
        sl2 += w[i] * L[i] * L[i];                        /* w*l*l */
    }
    *mx = m; *sumlx = slx; *suml2 = sl2;
    return amax < GROUP_MAX_EPS;
}

/*
 * make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL) for NL groups of n <= 16.
 * L[i]: levels 0..2*nmax-1 as float (0 for an all-zero group), *scale_out: the scale.
 */
static void qx_batch(int n, int nmax, const vf *x, vf *L, vf *scale_out) {
    const vf zero = {0};
    vf w[16], wx[16], Lt[16], mx, sumlx, suml2;
    const vi allzero = qx_start(n, nmax, x, L, w, wx, &mx, &sumlx, &suml2);
    vf scale = vsel(suml2 != zero, sumlx / suml2, zero);  /* suml2 ? sumlx/suml2 : 0 */
    vf best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        const float num = -(nmax + 0.1f * is);
        const vf iscale = num / mx;                       /* -(nmax + 0.1f*is) / max */
        sumlx = suml2 = zero;
        for (int i = 0; i < n; ++i) {
            const vf l = vlevel(iscale * x[i], -nmax, nmax - 1);
            Lt[i] = l;
            sumlx += wx[i] * l;
            suml2 += w[i] * l * l;
        }
        const vi upd = (suml2 > zero) & (sumlx * sumlx > best * suml2);
        if (!vany(upd)) continue;
        for (int i = 0; i < n; ++i) L[i] = vsel(upd, Lt[i], L[i]);
        scale = vsel(upd, sumlx / suml2, scale);
        best = vsel(upd, scale * sumlx, best);
    }
    for (int i = 0; i < n; ++i) L[i] = vsel(allzero, zero, L[i] + (float)nmax);
    *scale_out = vsel(allzero, zero, scale);
}

/*
 * make_q3_quants(n, nmax, x, L, do_rmse = true) for NL groups of n <= 16.
 * L[i]: levels 0..2*nmax-1 as float (0 for an all-zero group), *scale_out: the scale.
 * The refinement visits the elements in order; C stops after a pass that changed nothing, and
 * such a pass leaves its group's state as it was, so a lane that keeps going (because another
 * lane changed) changes nothing more: we stop when no lane changed.
 */
static void q3_batch(int n, int nmax, const vf *x, vf *L, vf *scale_out) {
    const vf zero = {0};
    vf w[16], wx[16], mx, sumlx, suml2;
    const vi allzero = qx_start(n, nmax, x, L, w, wx, &mx, &sumlx, &suml2);
    for (int itry = 0; itry < 5; ++itry) {
        vi changed = {0};
        for (int i = 0; i < n; ++i) {
            const vf slx = sumlx - wx[i] * L[i];          /* sumlx - w*x[i]*L[i] */
            const vf sl2 = suml2 - w[i] * L[i] * L[i];
            const vf new_l = vlevel(x[i] * sl2 / slx, -nmax, nmax - 1);
            const vf slx2 = slx + wx[i] * new_l;
            const vf sl22 = sl2 + w[i] * new_l * new_l;
            const vi acc = (slx > zero) & (new_l != L[i]) & (sl22 > zero) &
                           (slx2 * slx2 * suml2 > sumlx * sumlx * sl22);
            L[i] = vsel(acc, new_l, L[i]);
            sumlx = vsel(acc, slx2, sumlx);
            suml2 = vsel(acc, sl22, suml2);
            changed |= acc;
        }
        if (!vany(changed & ~allzero)) break;
    }
    for (int i = 0; i < n; ++i) L[i] = vsel(allzero, zero, L[i] + (float)nmax);
    *scale_out = vsel(allzero, zero, vsel(suml2 > zero, sumlx / suml2, zero));
}

/* ===== k-quants: one super-block of 256 (scales, levels from the batch -> bytes) ===== */

/* 2-bit fields: qs[32h + l] = L[128h + l] | L[128h+l+32] << 2 | L[..+64] << 4 | L[..+96] << 6 */
static void pack_crumbs(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
}

/* quantize_row_q2_K_ref, one super-block. Block: scales[16] | qs[64] | d | dmin (84 bytes) */
static void q2_k_block(const float *x, uint8_t *y) {
    vf xt[16], wt[16], Lv[16], sc, mn;
    load_t(x, 16, 16, xt);
    for (int i = 0; i < 16; ++i) wt[i] = vabs(xt[i]);     /* weights = |x| */
    qkx2_batch(16, 3, xt, wt, Lv, &sc, &mn, -0.5f, 0.1f, 15, 1);
    uint8_t L[QK_K], *scales = y;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mn[j] > max_min) max_min = mn[j];
        for (int i = 0; i < 16; ++i) L[16 * j + i] = (uint8_t)Lv[i][j];
    }
    uint16_t d = 0, dmin = 0;                             /* fp16 0.f */
    memset(scales, 0, 16);
    if (max_scale > 0) {
        const float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; ++j) scales[j] = (uint8_t)nearest_int(iscale * sc[j]);
        d = fp32_to_fp16(max_scale / 15.f);
    }
    if (max_min > 0) {
        const float iscale = 15.f / max_min;
        for (int j = 0; j < 16; ++j) scales[j] |= (uint8_t)(nearest_int(iscale * mn[j]) << 4);
        dmin = fp32_to_fp16(max_min / 15.f);
    }
    for (int j = 0; j < 16; ++j) {
        const float dq = fp16_to_fp32(d) * (scales[j] & 0xF);
        if (!dq) continue;
        const float dm = fp16_to_fp32(dmin) * (scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nearest_int((x[16 * j + ii] + dm) / dq);
            L[16 * j + ii] = (uint8_t)QMAX(0, QMIN(3, l));
        }
    }
    pack_crumbs(L, y + 16);
    put16(y + 80, d);
    put16(y + 82, dmin);
}

/* quantize_row_q3_K_ref, one super-block. Block: hmask[32] | qs[64] | scales[12] | d (110 bytes) */
static void q3_k_block(const float *x, uint8_t *y) {
    vf xt[16], Lv[16], scv;
    load_t(x, 16, 16, xt);
    q3_batch(16, 4, xt, Lv, &scv);
    int8_t L[QK_K];
    float scales[16], max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
        scales[j] = scv[j];
        const float a = fabsf(scales[j]);
        if (a > amax) { amax = a; max_scale = scales[j]; }
        for (int i = 0; i < 16; ++i) L[16 * j + i] = (int8_t)Lv[i][j];
    }
    uint8_t *hmask = y, *qs = y + 32, *sc = y + 96;
    memset(sc, 0, 12);
    uint16_t d = 0;
    if (max_scale) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; ++j) {
            int8_t l = (int8_t)nearest_int(iscale * scales[j]);
            l = (int8_t)(QMAX(-32, QMIN(31, l)) + 32);
            if (j < 8) sc[j] = l & 0xF;
            else sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
            l >>= 4;
            sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
        }
        d = fp32_to_fp16(1 / iscale);
    }
    for (int j = 0; j < 16; ++j) {
        int8_t s = (int8_t)(j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4);
        s = (int8_t)((s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
        const float dq = fp16_to_fp32(d) * s;
        if (!dq) continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nearest_int(x[16 * j + ii] / dq);
            L[16 * j + ii] = (int8_t)(QMAX(-4, QMIN(3, l)) + 4);
        }
    }
    memset(hmask, 0, 32);                                 /* bit k of hmask[m]: L[32k + m] > 3 */
    for (int j = 0; j < QK_K; ++j)
        if (L[j] > 3) { hmask[j % 32] |= (uint8_t)(1 << (j / 32)); L[j] -= 4; }
    pack_crumbs((const uint8_t *)L, qs);
    put16(y + 108, d);
}

/* quantize_row_q4_K_ref / q5_K_ref for nsb (1 or 2) super-blocks: their 8*nsb groups of 32 share
 * one batch.  Q4_K block: d | dmin | scales[12] | qs[128] (144 bytes); Q5_K: ... | qh[32] | qs[128] */
static void q45_k_blocks(const float *x, uint8_t *y, int nsb, int q5) {
    const int nmax = q5 ? 31 : 15;
    vf xt[32], wt[32], Lv[32], scv, mnv;
    load_t(x, 8 * nsb, 32, xt);
    vf sum_x2 = {0};
    for (int l = 0; l < 32; ++l) sum_x2 += xt[l] * xt[l];
    vf av_x = sum_x2 / 32.f;
    for (int g = 0; g < NL; ++g) av_x[g] = sqrtf(av_x[g]);    /* sqrtf(sum_x2/32) */
    for (int l = 0; l < 32; ++l) wt[l] = av_x + vabs(xt[l]);  /* weights = av_x + |x| */
    qkx2_batch(32, nmax, xt, wt, Lv, &scv, &mnv, q5 ? -0.5f : -1.f, 0.1f, q5 ? 15 : 20, 0);
    for (int s = 0; s < nsb; ++s, x += QK_K) {
        uint8_t *b = y + (size_t)s * (q5 ? 176 : 144), *scales = b + 4, L[QK_K];
        float sc[8], mn[8], max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; ++j) {
            sc[j] = scv[8 * s + j];
            mn[j] = mnv[8 * s + j];
            if (sc[j] > max_scale) max_scale = sc[j];
            if (mn[j] > max_min) max_min = mn[j];
            for (int i = 0; i < 32; ++i) L[32 * j + i] = (uint8_t)Lv[i][8 * s + j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < 8; ++j) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * sc[j]);
            uint8_t lm = (uint8_t)nearest_int(inv_min * mn[j]);
            ls = QMIN(63, ls);
            lm = QMIN(63, lm);
            if (j < 4) { scales[j] = ls; scales[j + 4] = lm; continue; }
            scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
        const uint16_t d = fp32_to_fp16(max_scale / 63.f), dmin = fp32_to_fp16(max_min / 63.f);
        put16(b, d);
        put16(b + 2, dmin);
        for (int j = 0; j < 8; ++j) {
            const uint8_t ls = j < 4 ? scales[j] & 63 : (uint8_t)((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
            const uint8_t lm = j < 4 ? scales[j + 4] & 63 : (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
            const float dq = fp16_to_fp32(d) * ls;
            if (!dq) continue;
            const float dm = fp16_to_fp32(dmin) * lm;
            for (int ii = 0; ii < 32; ++ii) {
                const int l = nearest_int((x[32 * j + ii] + dm) / dq);
                L[32 * j + ii] = (uint8_t)QMAX(0, QMIN(nmax, l));
            }
        }
        if (!q5) {                                        /* qs[32c + l] = L[64c + l] | L[64c + 32 + l] << 4 */
            for (int j = 0; j < QK_K; j += 64)
                for (int l = 0; l < 32; ++l) b[16 + j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            continue;
        }
        uint8_t *qh = b + 16, *ql = b + 48, m1 = 1, m2 = 2;   /* bit 4 of the levels in qh */
        memset(qh, 0, 32);
        for (int n = 0; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

/* quantize_row_q6_K_ref, one super-block. Block: ql[128] | qh[64] | scales[16] int8 | d (210 bytes) */
static void q6_k_block(const float *x, uint8_t *y) {
    vf xt[16], Lv[16], scv;
    load_t(x, 16, 16, xt);
    qx_batch(16, 32, xt, Lv, &scv);
    uint8_t L[QK_K];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        scales[ib] = scv[ib];
        const float a = fabsf(scales[ib]);
        if (a > max_abs_scale) { max_abs_scale = a; max_scale = scales[ib]; }
        for (int i = 0; i < 16; ++i) L[16 * ib + i] = (uint8_t)Lv[i][ib];
    }
    if (max_abs_scale < GROUP_MAX_EPS) { memset(y, 0, 210); return; }   /* all zeros, d = fp16 0 */
    int8_t *sc = (int8_t *)(y + 192);
    const float iscale = -128.f / max_scale;
    const uint16_t d = fp32_to_fp16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib) sc[ib] = (int8_t)QMIN(127, nearest_int(iscale * scales[ib]));
    for (int j = 0; j < 16; ++j) {
        const float dq = fp16_to_fp32(d) * sc[j];
        if (!dq) continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nearest_int(x[16 * j + ii] / dq);
            L[16 * j + ii] = (uint8_t)(QMAX(-32, QMIN(31, l)) + 32);
        }
    }
    uint8_t *ql = y, *qh = y + 128;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t *q = L + j + l;
            ql[l] = (uint8_t)((q[0] & 0xF) | ((q[64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q[32] & 0xF) | ((q[96] & 0xF) << 4));
            qh[l] = (uint8_t)((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
        }
    }
    put16(y + 208, d);
}

/* ===== Q4_0 .. Q8_0: blocks of 32 ===== */

/* Q4_0 (18 bytes: d | qs[16]) and Q5_0 (22 bytes: d | qh[4] | qs[16]): d = max / -8 or -16 where
 * max is the first value of largest magnitude; q = MIN(15, (int8_t)(x*id + 8.5f)) or
 * MIN(31, (int8_t)(x*id + 16.5f)) (the int8_t cast truncates toward zero) */
GG_INLINE void q_0_block(const float *x, uint8_t *y, int q5) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    }
    const float d = q5 ? max / -16 : max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    put16(y, fp32_to_fp16(d));
    uint8_t *qs = y + (q5 ? 6 : 2);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const float x0 = x[j] * id, x1 = x[16 + j] * id;
        const uint8_t xi0 = q5 ? QMIN(31, (int8_t)(x0 + 16.5f)) : QMIN(15, (int8_t)(x0 + 8.5f));
        const uint8_t xi1 = q5 ? QMIN(31, (int8_t)(x1 + 16.5f)) : QMIN(15, (int8_t)(x1 + 8.5f));
        qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
        qh |= ((xi0 & 0x10u) >> 4) << j;
        qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
    if (q5) memcpy(y + 2, &qh, 4);
}

/* Q4_1 (20 bytes: d | m | qs[16]) and Q5_1 (24 bytes: d | m | qh[4] | qs[16]): m = min,
 * d = (max - min) / 15 or 31; Q4_1: q = MIN(15, (int8_t)(v + 0.5f)), Q5_1: q = (uint8_t)(v + 0.5f) */
GG_INLINE void q_1_block(const float *x, uint8_t *y, int q5) {
    float min = 3.402823466e+38f, max = -3.402823466e+38f;    /* FLT_MAX, -FLT_MAX */
    for (int j = 0; j < 32; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / (q5 ? 31 : 15);
    const float id = d ? 1.0f / d : 0.0f;
    put16(y, fp32_to_fp16(d));
    put16(y + 2, fp32_to_fp16(min));
    uint8_t *qs = y + (q5 ? 8 : 4);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
        const uint8_t xi0 = q5 ? (uint8_t)(x0 + 0.5f) : QMIN(15, (int8_t)(x0 + 0.5f));
        const uint8_t xi1 = q5 ? (uint8_t)(x1 + 0.5f) : QMIN(15, (int8_t)(x1 + 0.5f));
        qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
        qh |= ((xi0 & 0x10u) >> 4) << j;
        qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
    if (q5) memcpy(y + 4, &qh, 4);
}

/* Q8_0 (34 bytes: d | qs[32] int8): d = amax / 127, q = roundf(x * id) */
static void q8_0_block(const float *x, uint8_t *y) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = QMAX(amax, fabsf(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    put16(y, fp32_to_fp16(d));
    for (int j = 0; j < 32; ++j) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* ===== Dispatch and threads ===== */

/* elements per block of a supported type (0 if unsupported), and *bbytes its bytes */
static int type_info(int type, int *bbytes) {
    static const int T[][3] = {{GG_F32, 1, 4}, {GG_F16, 1, 2}, {GG_BF16, 1, 2}, {GG_Q4_0, 32, 18},
                               {GG_Q4_1, 32, 20}, {GG_Q5_0, 32, 22}, {GG_Q5_1, 32, 24}, {GG_Q8_0, 32, 34},
                               {GG_Q2_K, QK_K, 84}, {GG_Q3_K, QK_K, 110}, {GG_Q4_K, QK_K, 144},
                               {GG_Q5_K, QK_K, 176}, {GG_Q6_K, QK_K, 210}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; ++i)
        if (T[i][0] == type) { *bbytes = T[i][2]; return T[i][1]; }
    return 0;
}

/* blocks [0, nb) of x (nb * block elements) -> y (nb * block bytes) */
static void quantize_blocks(int type, const float *x, int64_t nb, uint8_t *y) {
    int64_t i = 0;
    switch (type) {
        case GG_F32: memcpy(y, x, (size_t)nb * 4); break;
        case GG_F16: for (; i < nb; ++i) put16(y + 2 * i, fp32_to_fp16(x[i])); break;
        case GG_BF16: for (; i < nb; ++i) put16(y + 2 * i, fp32_to_bf16(x[i])); break;
        case GG_Q4_0: for (; i < nb; ++i) q_0_block(x + 32 * i, y + 18 * i, 0); break;
        case GG_Q5_0: for (; i < nb; ++i) q_0_block(x + 32 * i, y + 22 * i, 1); break;
        case GG_Q4_1: for (; i < nb; ++i) q_1_block(x + 32 * i, y + 20 * i, 0); break;
        case GG_Q5_1: for (; i < nb; ++i) q_1_block(x + 32 * i, y + 24 * i, 1); break;
        case GG_Q8_0: for (; i < nb; ++i) q8_0_block(x + 32 * i, y + 34 * i); break;
        case GG_Q2_K: for (; i < nb; ++i) q2_k_block(x + QK_K * i, y + 84 * i); break;
        case GG_Q3_K: for (; i < nb; ++i) q3_k_block(x + QK_K * i, y + 110 * i); break;
        case GG_Q6_K: for (; i < nb; ++i) q6_k_block(x + QK_K * i, y + 210 * i); break;
        case GG_Q4_K:
        case GG_Q5_K: {
            const int q5 = type == GG_Q5_K, bb = q5 ? 176 : 144;
            for (; i < nb; i += 2)                        /* two super-blocks = 16 groups = one batch */
                q45_k_blocks(x + QK_K * i, y + bb * i, nb - i >= 2 ? 2 : 1, q5);
            break;
        }
        default: break;
    }
}

/* source rows -> float32: F32 as is; F16 and BF16 exactly (every half / bf16 is a float) */
static void to_f32(int src_type, const void *src, int64_t n, float *dst) {
    const uint16_t *h = (const uint16_t *)src;
    int64_t i = 0;
    if (src_type == GG_BF16) {
        for (; i < n; ++i) dst[i] = u2f((uint32_t)h[i] << 16);
        return;
    }
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)                            /* vcvtph2ps: exact */
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
    for (; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
}

#define UNIT 4096   /* elements converted at a time (16 super-blocks: Q4_K/Q5_K pairs stay whole) */

typedef struct {
    int type, src_type, bs, bb;
    const uint8_t *x;     /* source blocks, src_type elements */
    uint8_t *y;
    int64_t nb;
} qjob_t;

static void *qjob_run(void *arg) {
    const qjob_t *j = (const qjob_t *)arg;
    if (j->src_type == GG_F32) {
        quantize_blocks(j->type, (const float *)j->x, j->nb, j->y);
        return NULL;
    }
    float buf[UNIT] __attribute__((aligned(64)));
    const int64_t per = j->bs >= UNIT ? 1 : UNIT / j->bs;        /* blocks per unit */
    const size_t es = 2;                                         /* F16 / BF16 source element */
    for (int64_t b = 0; b < j->nb; b += per) {
        const int64_t nb = QMIN(per, j->nb - b);
        to_f32(j->src_type, j->x + (size_t)b * j->bs * es, nb * j->bs, buf);
        quantize_blocks(j->type, buf, nb, j->y + (size_t)b * j->bb);
    }
    return NULL;
}

/*
 * Quantize nrows rows of n_per_row elements (contiguous; src_type F32, F16 or BF16, converted to
 * float32 exactly on the fly) to ggml `type` into out (nrows * row bytes), bit for bit like
 * llama.cpp's quantize_row_*_ref, on nthreads threads (<= 1: the caller's thread only).
 * Returns 0, -1 (bad argument, or an unsupported src_type), -2 (unsupported type) or -3
 * (n_per_row is not a multiple of the type's block size).
 */
GG_API int gg_quantize(int type, const void *x, int src_type, int64_t nrows, int64_t n_per_row, uint8_t *out,
                       int nthreads) {
    int bb = 0;
    const int bs = type_info(type, &bb);
    if (!bs) return -2;
    if (nrows < 0 || n_per_row <= 0 || (src_type != GG_F32 && src_type != GG_F16 && src_type != GG_BF16)) return -1;
    if (n_per_row % bs) return -3;
    if (nrows == 0) return 0;
    if (!x || !out) return -1;
    const int64_t nb = nrows * (n_per_row / bs);
    const size_t es = src_type == GG_F32 ? 4 : 2;
    /* at least ~64K elements per thread; chunks of an even number of blocks (Q4_K/Q5_K pairs) */
    int64_t nth = QMAX(1, QMIN((int64_t)QMIN(nthreads, 256), nb * bs / 65536));
    const int64_t chunk = ((nb + nth - 1) / nth + 1) & ~(int64_t)1;
    nth = (nb + chunk - 1) / chunk;
    pthread_t tid[256];
    qjob_t jobs[256];
    int started[256] = {0};
    for (int64_t t = 0; t < nth; ++t) {
        const int64_t b0 = t * chunk, b1 = QMIN(nb, b0 + chunk);
        jobs[t] = (qjob_t){type, src_type, bs, bb, (const uint8_t *)x + (size_t)b0 * bs * es, out + b0 * bb, b1 - b0};
        if (t > 0) started[t] = pthread_create(&tid[t], NULL, qjob_run, &jobs[t]) == 0;
    }
    qjob_run(&jobs[0]);
    for (int64_t t = 1; t < nth; ++t) {
        if (started[t]) pthread_join(tid[t], NULL);
        else qjob_run(&jobs[t]);                          /* could not start a thread: do it here */
    }
    return 0;
}
