/*
 * ggrun CPU matmul kernels.
 *
 *   Y[m, n] = sum_k X[m, k] * W[n, k]       W: raw GGUF blocks, read in place (never copied)
 *
 * Numerics follow llama.cpp's CPU backend as built for x86 with AVX2/AVX-512:
 *   - every row of X is first converted to the weight type's vec_dot_type:
 *       Q4_0, Q5_0, Q8_0 -> Q8_0;  Q4_1, Q5_1 -> Q8_1;  Q2_K..Q6_K -> Q8_K;  F16 -> f16;  BF16 -> bf16;  F32 -> f32
 *     Q8_0/Q8_1 as quantize_row_q8_0/q8_1 in ggml-cpu/arch/x86/quants.c: amax over the block,
 *     d = amax/127, id = 127/amax, q = round-half-even(x*id), d stored as fp16 (RNE),
 *     Q8_1 s = fp16(d * sum(q)) with the unrounded f32 d.
 *     Q8_K as quantize_row_q8_K_ref: iscale = -127/max (max = signed value of largest magnitude, first
 *     occurrence), q = nearest_int(iscale*x) (half-even), min(q, 127), d = 1/iscale, bsums over 16.
 *     f16 / bf16: round to nearest even.
 *   - per block the integer dot product of the quants is exact, then scaled like ggml_vec_dot_*:
 *       Q4_0/Q5_0/Q8_0: sum_b (d_w*d_x) * isum_b
 *       Q4_1/Q5_1:      sum_b (d_w*d_x) * isum_b + sum_b m_w*s_x
 *       K-quants:       sum_sb (d_x*d_w) * sum(sc*isum)  [+ (d_x*dmin_w) * sum(min*bsum)]
 *   For Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 the default (g_exact) kernels also keep ggml's float accumulation
 *   order (8-lane accumulator per output, fma per block in block order, hsum_float_8, the m*s fma
 *   chain): bit-identical to ggml_vec_dot_* on x86. Otherwise only the order of the float
 *   accumulation differs from llama.cpp (last-ulp level).
 *
 * Three builds from this one source, picked by the compiler flags (-march=native by default):
 *   AVX-512 (F, BW, VL, VNNI, VBMI) + F16C/FMA, AVX2 + F16C/FMA, and portable C.
 *
 * AVX-512 kernels:
 *   M < GG_PANEL_M (decode): direct kernels reading the raw rows.
 *     Q4_1: 16 blocks (320 bytes) = 5 raw zmm; nibbles split in place, the activation quants are laid
 *       out at the same byte positions (0 under the d/m headers), 2 vpdpbusd per zmm, the 16 d/m
 *       scales of a group gathered from the headers and converted once; leftover blocks as pairs.
 *     other 32-blocks: pairs of blocks byte-permuted (vpermb / vpermt2b) into one zmm, vpdpbusd,
 *       per-block scale lanes; Q8_0 runs as (w^0x80)*x with the -128*sum(x) correction as start value.
 *     K-quants: a superblock as 4 zmm of 64 quants + int16 scale words; vpmaddubsw + vpdpwssd.
 *   M >= GG_PANEL_M (prompt): 16 weight rows x a block/superblock are unpacked, transposed to the
 *     VNNI layout (one row per int32 lane) into a per-thread panel, and multiplied with activation
 *     dwords broadcast as x+128 (correction: -128*sum(w) as start value); 8 (6) tokens per tile,
 *     16 outputs per store, no horizontal sums. K-quant sub-block scales are applied to the exact
 *     int32 sub-block sums (vpmulld), min terms via vpdpwssd with the activation bsums.
 *
 * Threads: a persistent pool; each call is cut into row chunks that the caller and the workers
 * claim dynamically, so a descheduled worker delays a call by at most one chunk. Workers spin for
 * a while (gg_set_spin_us) after a job and then sleep on a futex.
 */
#define _GNU_SOURCE
#include "kernels.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__AVX512VBMI__) && defined(__F16C__) && defined(__FMA__) && !defined(GG_NO_AVX512)
#define GG_AVX512 1
#else
#define GG_AVX512 0
#endif
#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__) && !defined(GG_NO_AVX2)
#define GG_AVX2 1
#else
#define GG_AVX2 0
#endif

#define GG_VERSION "ggrun-cpu-kernels 1"

#ifndef GG_PF_EX
#define GG_PF_EX 1024 /* prefetch distance of the exact-order kernels (8 rows in flight) */
#endif

/* 1: legacy 32-block types use llama.cpp's exact float accumulation order (bit-identical results);
   0: the faster kernels (same integers, different float summation order) */
static int g_exact = 1;

/* set by a kernel that could not run (out of memory for its scratch); returned by the call */
static _Atomic int g_kernel_err = 0;

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

static inline float f32_from_bits(uint32_t w) { float f; memcpy(&f, &w, 4); return f; }
static inline uint32_t f32_bits(float f) { uint32_t w; memcpy(&w, &f, 4); return w; }
static inline uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* IEEE half <-> float, round to nearest even (what F16C's vcvtps2ph with imm 0 does). */
static inline float fp16_to_f32_sw(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return f32_from_bits(sign);
        /* subnormal: value = man * 2^-24, exact in float */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13));
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t f32_to_fp16_sw(float f) {
    const uint32_t w = f32_bits(f);
    const uint32_t sign = (w >> 16) & 0x8000;
    const uint32_t aw = w & 0x7fffffffu;
    if (aw > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((aw >> 13) & 0x3ff));  /* NaN */
    if (aw >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);                         /* rounds to inf */
    if (aw < 0x38800000u) {                                                            /* subnormal half */
        /* value / 2^-24 rounded to nearest even: let the FPU do it */
        const float v = f32_from_bits(aw) * 16777216.0f;  /* exact scaling by 2^24 */
        /* v < 1024: round half even via magic number */
        const float r = (v + 8388608.0f) - 8388608.0f;
        return (uint16_t)(sign | (uint32_t)r);
    }
    /* normal: round mantissa to 10 bits, half to even */
    uint32_t m = aw + 0xfffu + ((aw >> 13) & 1u);
    m -= 0x38000000u;  /* rebias exponent 127 -> 15 */
    return (uint16_t)(sign | (m >> 13));
}

#if defined(__F16C__)
static inline float fp16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
static inline uint16_t f32_to_fp16(float f) { return (uint16_t)_cvtss_sh(f, 0); }
#else
static inline float fp16_to_f32(uint16_t h) { return fp16_to_f32_sw(h); }
static inline uint16_t f32_to_fp16(float f) { return f32_to_fp16_sw(f); }
#endif

static inline float ldh(const uint8_t *p) { return fp16_to_f32(ld16(p)); }

static inline uint32_t f32_to_bf16_bits(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 64;  /* quiet NaN, as ggml */
    return (u + (0x7fffu + ((u >> 16) & 1u))) >> 16;
}

/* round half to even (the default rounding mode), like ggml's nearest_int. No "v + 1.5*2^23" trick
   here: with the product inlined, a compiler allowed to contract would fuse it into an fma and skip
   the product's rounding (the build also passes -ffp-contract=off) */
static inline int rne_int(float v) { return (int)nearbyintf(v); }

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* activation quantization                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* One Q8_0/Q8_1 block: returns sum(q); writes q[32], *dq (fp16-rounded d as float), *sq (fp16(d*sum)). */
static inline int quant_block32(const float *x, int8_t *q, float *dq, float *sq) {
#if GG_AVX512
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i i0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i i1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtsepi32_epi8(i1));
    const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
#elif GG_AVX2
    __m256 v[4];
    __m256 ma = _mm256_setzero_ps();
    const __m256 sb = _mm256_set1_ps(-0.0f);
    for (int j = 0; j < 4; ++j) {
        v[j] = _mm256_loadu_ps(x + 8 * j);
        ma = _mm256_max_ps(ma, _mm256_andnot_ps(sb, v[j]));
    }
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(ma, 1), _mm256_castps256_ps128(ma));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i iv[4];
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
        iv[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        acc = _mm256_add_epi32(acc, iv[j]);
    }
    __m256i p0 = _mm256_packs_epi32(iv[0], iv[1]);
    __m256i p1 = _mm256_packs_epi32(iv[2], iv[3]);
    p0 = _mm256_packs_epi16(p0, p1);
    p0 = _mm256_permutevar8x32_epi32(p0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p0);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    const int sum = _mm_cvtsi128_si32(s4);
#else
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
        const int v = rne_int(x[j] * id);
        q[j] = (int8_t)v;
        sum += v;
    }
#endif
    *dq = fp16_to_f32(f32_to_fp16(d));
    *sq = fp16_to_f32(f32_to_fp16(d * (float)sum));
    return sum;
}

static void quant_a32_row(const float *x, int64_t K, uint8_t *out, int corr, int with_qsu, int g20, int pats) {
    const a32_lay_t L = a32_lay(K);
    int8_t *qs = (int8_t *)out;
    float *dd = (float *)(out + L.o_d), *ss = (float *)(out + L.o_s);
    int32_t *sum = (int32_t *)(out + L.o_sum);
    float *dpat = (float *)(out + L.o_dpat), *spat = (float *)(out + L.o_spat);
    int32_t *cpat = (int32_t *)(out + L.o_cpat);
    for (int64_t b = 0; b < L.nb; ++b) {
        float dq, sq;
        const int s = quant_block32(x + b * 32, qs + b * 32, &dq, &sq);
        dd[b] = dq;
        ss[b] = sq;
        sum[b] = s;
        if (pats) {
            for (int j = 0; j < 8; ++j) {
                dpat[b * 8 + j] = dq;
                cpat[b * 8 + j] = 0;
                spat[b * 8 + j] = 0.0f;
            }
            for (int l = 0; l < 8; ++l) {  /* per int32 lane: -c * (sum of the 4 quants of that lane) */
                const int8_t *ql = qs + b * 32 + 4 * l;
                cpat[b * 8 + l] = -corr * (ql[0] + ql[1] + ql[2] + ql[3]);
            }
            spat[b * 8] = sq;
        }
    }
    for (int64_t b = L.nb; b < L.nbp; ++b) {
        memset(qs + b * 32, 0, 32);
        dd[b] = ss[b] = 0.0f;
        sum[b] = 0;
        for (int j = 0; j < 8; ++j) {
            dpat[b * 8 + j] = 0.0f;
            cpat[b * 8 + j] = 0;
            spat[b * 8 + j] = 0.0f;
        }
    }
    if (g20) {
        for (int64_t g = 0; g < L.ng; ++g) {
            uint8_t *o = out + L.o_g20 + g * G20_BYTES;
            memset(o, 0, 640);
            for (int b = 0; b < 16; ++b) {
                memcpy(o + 20 * b + 4, qs + (16 * g + b) * 32, 16);
                memcpy(o + 320 + 20 * b + 4, qs + (16 * g + b) * 32 + 16, 16);
            }
            memcpy(o + 640, dd + 16 * g, 64);
            memcpy(o + 704, ss + 16 * g, 64);
        }
    }
    if (with_qsu) {
        uint8_t *qsu = out + L.o_qsu;
        for (int64_t j = 0; j < L.nbp * 32; ++j) qsu[j] = (uint8_t)qs[j] ^ 0x80;
    }
}

/* quantize_row_q8_K_ref semantics */
static void quant_q8k_row(const float *x, int64_t K, uint8_t *out, int with_qsu) {
    const int64_t nsb = K / 256;
    for (int64_t i = 0; i < nsb; ++i, x += 256) {
        uint8_t *o = out + i * Q8K_SB_BYTES;
        float *pd = (float *)(o + Q8K_O_D);
        int16_t *bs = (int16_t *)(o + Q8K_O_BSUMS);
        int16_t *b32 = (int16_t *)(o + Q8K_O_BSUM32);
        int8_t *q = (int8_t *)(o + Q8K_O_QS);
#if GG_AVX512
        __m512 ma = _mm512_setzero_ps();
        for (int j = 0; j < 256; j += 16) ma = _mm512_max_ps(ma, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
        const float amax = _mm512_reduce_max_ps(ma);
        if (amax == 0.0f) {
            memset(o, 0, Q8K_SB_BYTES);
            memset(o + Q8K_O_QSU, 0x80, 256);
            continue;
        }
        float max = 0.0f;
        const __m512 va = _mm512_set1_ps(amax);
        for (int j = 0; j < 256; j += 16) {
            const __mmask16 k = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), va, _CMP_EQ_OQ);
            if (k) { max = x[j + __builtin_ctz(k)]; break; }
        }
        const float iscale = -127.f / max;
        const __m512 vs = _mm512_set1_ps(iscale);
        const __m512i c127 = _mm512_set1_epi32(127);
        for (int j = 0; j < 256; j += 16) {
            __m512i v = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + j), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_min_epi32(v, c127);
            _mm_storeu_si128((__m128i *)(q + j), _mm512_cvtsepi32_epi8(v));
            bs[j / 16] = (int16_t)_mm512_reduce_add_epi32(v);
        }
        *pd = 1 / iscale;
#else
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 256; ++j) {
            const float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (amax == 0.0f) {
            memset(o, 0, Q8K_SB_BYTES);
            memset(o + Q8K_O_QSU, 0x80, 256);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < 256; ++j) {
            const int v = rne_int(iscale * x[j]);
            q[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; ++j) {
            int s = 0;
            for (int l = 0; l < 16; ++l) s += q[j * 16 + l];
            bs[j] = (int16_t)s;
        }
        *pd = 1 / iscale;
#endif
        for (int j = 0; j < 8; ++j) b32[j] = (int16_t)(bs[2 * j] + bs[2 * j + 1]);
        if (with_qsu)
            for (int j = 0; j < 256; ++j) o[Q8K_O_QSU + j] = (uint8_t)q[j] ^ 0x80;
    }
}

static void quant_f_row(const float *x, int64_t K, float *out, int afmt) {
    const int64_t Kp = (K + 15) & ~(int64_t)15;
    int64_t j = 0;
    if (afmt == AF_F16) {
#if GG_AVX512
        for (; j + 16 <= K; j += 16)
            _mm512_storeu_ps(out + j, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + j), _MM_FROUND_TO_NEAREST_INT)));
#elif GG_AVX2
        for (; j + 8 <= K; j += 8)
            _mm256_storeu_ps(out + j, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + j), _MM_FROUND_TO_NEAREST_INT)));
#endif
        for (; j < K; ++j) out[j] = fp16_to_f32(f32_to_fp16(x[j]));
    } else if (afmt == AF_BF16) {
        for (; j < K; ++j) out[j] = f32_from_bits(f32_to_bf16_bits(x[j]) << 16);
    } else {
        memcpy(out, x, (size_t)K * 4);
        j = K;
    }
    for (j = K; j < Kp; ++j) out[j] = 0.0f;
}

/* ------------------------------------------------------------------------------------------ */
/* portable kernels (all types)                                                                */
/* ------------------------------------------------------------------------------------------ */

/* unpack one 32-block of a legacy type into signed quants; returns d, sets *m (0 if none) */
static inline float unpack32_sc(int type, const uint8_t *b, int8_t *q, float *m) {
    *m = 0.0f;
    switch (type) {
    case GG_Q4_0:
        for (int j = 0; j < 16; ++j) { q[j] = (int8_t)((b[2 + j] & 0xf) - 8); q[j + 16] = (int8_t)((b[2 + j] >> 4) - 8); }
        return ldh(b);
    case GG_Q4_1:
        for (int j = 0; j < 16; ++j) { q[j] = (int8_t)(b[4 + j] & 0xf); q[j + 16] = (int8_t)(b[4 + j] >> 4); }
        *m = ldh(b + 2);
        return ldh(b);
    case GG_Q5_0: {
        const uint32_t qh = ld32(b + 2);
        for (int j = 0; j < 16; ++j) {
            q[j] = (int8_t)(((b[6 + j] & 0xf) | (((qh >> j) & 1) << 4)) - 16);
            q[j + 16] = (int8_t)(((b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        return ldh(b);
    }
    case GG_Q5_1: {
        const uint32_t qh = ld32(b + 4);
        for (int j = 0; j < 16; ++j) {
            q[j] = (int8_t)((b[8 + j] & 0xf) | (((qh >> j) & 1) << 4));
            q[j + 16] = (int8_t)((b[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        *m = ldh(b + 2);
        return ldh(b);
    }
    default: /* Q8_0 */
        memcpy(q, b + 2, 32);
        return ldh(b);
    }
}

/* llama.cpp's final reduction of an 8-lane accumulator (hsum_float_8) */
static inline float hsum8_sc(const float a[8]) {
    const float r0 = a[4] + a[0], r1 = a[5] + a[1], r2 = a[6] + a[2], r3 = a[7] + a[3];
    return (r0 + r2) + (r1 + r3);
}

/* exact ggml_vec_dot_q*_q8_* (x86 AVX2/AVX-512 build) order, emulated: per block, 8 int lane sums of
   4 consecutive products, acc[l] = fma(d_w*d_x, lane, acc[l]); summs = fma(m_w, s_x, summs);
   result = hsum_float_8(acc) + summs */
static void k_a32_scalar(int type, int bbytes, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                         const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const a32_lay_t L = a32_lay(K);
    const int has_m = type == GG_Q4_1 || type == GG_Q5_1;
    int8_t q[32];
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t *wr = W + r * ws;
        for (int64_t m = 0; m < M; ++m) {
            const uint8_t *xr = X + m * xs;
            const int8_t *xq = (const int8_t *)xr;
            const float *xd = (const float *)(xr + L.o_d), *xsm = (const float *)(xr + L.o_s);
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, summs = 0.0f;
            for (int64_t b = 0; b < L.nb; ++b) {
                float mw;
                const float dw = unpack32_sc(type, wr + b * bbytes, q, &mw);
                const float dd = dw * xd[b];
                for (int l = 0; l < 8; ++l) {
                    int sl = 0;
                    for (int j = 4 * l; j < 4 * l + 4; ++j) sl += q[j] * xq[b * 32 + j];
                    acc[l] = fmaf(dd, (float)sl, acc[l]);
                }
                if (has_m) summs = fmaf(mw, xsm[b], summs);
            }
            Y[m * ldy + r] = has_m ? hsum8_sc(acc) + summs : hsum8_sc(acc);
        }
    }
}

#define DEF_A32_SC(NAME, TYPE, BB)                                                                       \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        k_a32_scalar(TYPE, BB, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                       \
    }
DEF_A32_SC(k_q4_0_sc, GG_Q4_0, 18)
DEF_A32_SC(k_q4_1_sc, GG_Q4_1, 20)
DEF_A32_SC(k_q5_0_sc, GG_Q5_0, 22)
DEF_A32_SC(k_q5_1_sc, GG_Q5_1, 24)
DEF_A32_SC(k_q8_0_sc, GG_Q8_0, 34)

/* K-quant helpers */
static inline void q4k_scales(const uint8_t *sc12, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[4];
    memcpy(u, sc12, 12);
    u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    const uint32_t ua = u[1] & 0x3f3f3f3fu;
    u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    u[2] = ua;
    u[0] &= 0x3f3f3f3fu;
    memcpy(sc, u, 8);
    memcpy(mn, u + 2, 8);
}

static inline void q3k_scales(const uint8_t *sc12, int8_t out[16]) {
    uint32_t a[4];
    memcpy(a, sc12, 12);
    const uint32_t tmp = a[2];
    a[2] = ((a[0] >> 4) & 0x0f0f0f0fu) | (((tmp >> 4) & 0x03030303u) << 4);
    a[3] = ((a[1] >> 4) & 0x0f0f0f0fu) | (((tmp >> 6) & 0x03030303u) << 4);
    a[0] = (a[0] & 0x0f0f0f0fu) | (((tmp >> 0) & 0x03030303u) << 4);
    a[1] = (a[1] & 0x0f0f0f0fu) | (((tmp >> 2) & 0x03030303u) << 4);
    uint8_t u[16];
    memcpy(u, a, 16);
    for (int j = 0; j < 16; ++j) out[j] = (int8_t)(u[j] - 32);
}

/* unpack one K superblock (256) to signed quants; per-16 int scales sc16 (or per-32 for Q4_K/Q5_K
   written twice), mins likewise; returns d, *dmin */
static inline float unpackK_sc(int type, const uint8_t *b, int8_t *q, int *sc16, int *mn16, float *dmin) {
    *dmin = 0.0f;
    switch (type) {
    case GG_Q2_K: {
        const uint8_t *qs = b + 16;
        for (int k = 0; k < 2; ++k)
            for (int j = 0; j < 4; ++j)
                for (int l = 0; l < 32; ++l) q[128 * k + 32 * j + l] = (int8_t)((qs[32 * k + l] >> (2 * j)) & 3);
        for (int j = 0; j < 16; ++j) { sc16[j] = b[j] & 0xf; mn16[j] = b[j] >> 4; }
        *dmin = ldh(b + 82);
        return ldh(b + 80);
    }
    case GG_Q3_K: {
        const uint8_t *hm = b, *qs = b + 32;
        for (int k = 0; k < 2; ++k)
            for (int j = 0; j < 4; ++j)
                for (int l = 0; l < 32; ++l) {
                    const int v = (qs[32 * k + l] >> (2 * j)) & 3;
                    const int h = (hm[l] >> (4 * k + j)) & 1;
                    q[128 * k + 32 * j + l] = (int8_t)(v - (h ? 0 : 4));
                }
        int8_t s[16];
        q3k_scales(b + 96, s);
        for (int j = 0; j < 16; ++j) { sc16[j] = s[j]; mn16[j] = 0; }
        return ldh(b + 108);
    }
    case GG_Q4_K: case GG_Q5_K: {
        const int is5 = type == GG_Q5_K;
        const uint8_t *qs = b + (is5 ? 48 : 16), *qh = b + 16;
        for (int j = 0; j < 4; ++j)
            for (int l = 0; l < 32; ++l) {
                int lo = qs[32 * j + l] & 0xf, hi = qs[32 * j + l] >> 4;
                if (is5) {
                    lo |= ((qh[l] >> (2 * j)) & 1) << 4;
                    hi |= ((qh[l] >> (2 * j + 1)) & 1) << 4;
                }
                q[64 * j + l] = (int8_t)lo;
                q[64 * j + 32 + l] = (int8_t)hi;
            }
        uint8_t sc[8], mn[8];
        q4k_scales(b + 4, sc, mn);
        for (int j = 0; j < 16; ++j) { sc16[j] = sc[j / 2]; mn16[j] = mn[j / 2]; }
        *dmin = ldh(b + 2);
        return ldh(b);
    }
    default: { /* Q6_K */
        const uint8_t *ql = b, *qh = b + 128;
        for (int h = 0; h < 2; ++h)
            for (int l = 0; l < 32; ++l) {
                const uint8_t *L = ql + 64 * h, *H = qh + 32 * h;
                int8_t *o = q + 128 * h;
                o[l] = (int8_t)(((L[l] & 0xf) | (((H[l] >> 0) & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((L[l + 32] & 0xf) | (((H[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32);
            }
        for (int j = 0; j < 16; ++j) { sc16[j] = (int8_t)b[192 + j]; mn16[j] = 0; }
        return ldh(b + 208);
    }
    }
}

static void k_kq_scalar(int type, int bbytes, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                        const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const int64_t nsb = K / 256;
    int8_t q[256];
    int sc[16], mn[16];
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t *wr = W + r * ws;
        for (int64_t m = 0; m < M; ++m) {
            const uint8_t *xr = X + m * xs;
            float sumf = 0.0f, summ = 0.0f;
            for (int64_t i = 0; i < nsb; ++i) {
                float dmin;
                const float dw = unpackK_sc(type, wr + i * bbytes, q, sc, mn, &dmin);
                const uint8_t *xb = xr + i * Q8K_SB_BYTES;
                const int8_t *xq = (const int8_t *)(xb + Q8K_O_QS);
                const int16_t *bs = (const int16_t *)(xb + Q8K_O_BSUMS);
                float xd;
                memcpy(&xd, xb, 4);
                int sumi = 0, summs = 0;
                for (int j = 0; j < 16; ++j) {
                    int s = 0;
                    for (int l = 0; l < 16; ++l) s += q[16 * j + l] * xq[16 * j + l];
                    sumi += sc[j] * s;
                    summs += mn[j] * bs[j];
                }
                sumf += (xd * dw) * (float)sumi;
                if (type == GG_Q2_K) summ += (-xd * dmin) * (float)summs;
                else if (type == GG_Q4_K || type == GG_Q5_K) summ += (-xd * dmin) * (float)summs;
            }
            Y[m * ldy + r] = sumf + summ;
        }
    }
}

#define DEF_KQ_SC(NAME, TYPE, BB)                                                                        \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        k_kq_scalar(TYPE, BB, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                        \
    }
DEF_KQ_SC(k_q2_k_sc, GG_Q2_K, 84)
DEF_KQ_SC(k_q3_k_sc, GG_Q3_K, 110)
DEF_KQ_SC(k_q4_k_sc, GG_Q4_K, 144)
DEF_KQ_SC(k_q5_k_sc, GG_Q5_K, 176)
DEF_KQ_SC(k_q6_k_sc, GG_Q6_K, 210)

static void k_f_scalar(int type, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                       const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t *wr = W + r * ws;
        for (int64_t m = 0; m < M; ++m) {
            const float *xr = (const float *)(X + m * xs);
            float s = 0.0f;
            if (type == GG_F32) {
                for (int64_t k = 0; k < K; ++k) { float w; memcpy(&w, wr + 4 * k, 4); s += w * xr[k]; }
            } else if (type == GG_F16) {
                for (int64_t k = 0; k < K; ++k) s += fp16_to_f32(ld16(wr + 2 * k)) * xr[k];
            } else {
                for (int64_t k = 0; k < K; ++k) s += f32_from_bits((uint32_t)ld16(wr + 2 * k) << 16) * xr[k];
            }
            Y[m * ldy + r] = s;
        }
    }
}

#define DEF_F_SC(NAME, TYPE)                                                                             \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        k_f_scalar(TYPE, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                             \
    }
DEF_F_SC(k_f32_sc, GG_F32)
DEF_F_SC(k_f16_sc, GG_F16)
DEF_F_SC(k_bf16_sc, GG_BF16)

/* ------------------------------------------------------------------------------------------ */
/* AVX2 kernels                                                                                */
/* ------------------------------------------------------------------------------------------ */
#if GG_AVX2

/* get_scale_min_k4 for all 8 sub-blocks: 12 bytes at p (16 readable) -> [sc0..sc7, mn0..mn7] */
GG_INLINE __m128i q4k_scales_sse(const uint8_t *p) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    const __m128i A = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i B = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7));
    const __m128i hb = _mm_and_si128(_mm_srli_epi16(B, 2), _mm_set1_epi8(0x30));          /* (B >> 6) << 4 */
    const __m128i lo6 = _mm_and_si128(A, _mm_set1_epi8(63));                               /* lanes 0-3, 8-11 */
    const __m128i l4 = _mm_or_si128(_mm_and_si128(A, _mm_set1_epi8(15)), hb);               /* lanes 4-7 */
    const __m128i h4 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(A, 4), _mm_set1_epi8(15)), hb); /* 12-15 */
    const __m128i sel_hi = _mm_setr_epi8(0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m128i sel_h4 = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1);
    return _mm_blendv_epi8(_mm_blendv_epi8(lo6, l4, sel_hi), h4, sel_h4);
}

/* 32 bits -> 32 bytes, 0xff where the bit is set */
GG_INLINE __m256i bits_to_bytes32(uint32_t x) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits);
}

GG_INLINE float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* unsigned quants (u8) of a 32-block; Q8_0: returns signed w (caller applies the sign trick) */
GG_INLINE __m256i a32_unpack256(const int type, const uint8_t *b) {
    if (type == GG_Q8_0) return _mm256_loadu_si256((const __m256i *)(b + 2));
    const int QO = type == GG_Q4_0 ? 2 : type == GG_Q4_1 ? 4 : type == GG_Q5_0 ? 6 : 8;
    const __m128i v = _mm_loadu_si128((const __m128i *)(b + QO));
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(v, m4)),
                                        _mm_and_si128(_mm_srli_epi16(v, 4), m4), 1);
    if (type == GG_Q5_0 || type == GG_Q5_1) {
        const uint32_t qh = ld32(b + (type == GG_Q5_0 ? 2 : 4));
        q = _mm256_or_si256(q, _mm256_and_si256(bits_to_bytes32(qh), _mm256_set1_epi8(0x10)));
    }
    return q;
}

GG_INLINE void a32_tile256(const int type, const int R, const int T, const uint8_t *W, size_t ws, int64_t r,
                           const uint8_t *X, size_t xs, const a32_lay_t *L, int64_t m, float *Y, int64_t ldy) {
    const int BB = type == GG_Q4_0 ? 18 : type == GG_Q4_1 ? 20 : type == GG_Q5_0 ? 22 : type == GG_Q5_1 ? 24 : 34;
    const int HAS_M = type == GG_Q4_1 || type == GG_Q5_1;
    const int HAS_C = type == GG_Q4_0 || type == GG_Q5_0;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4][4];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < L->nb; ++b) {
        __m256i Q[4], S[4];
        __m256 DW[4], MW[4];
        for (int i = 0; i < R; ++i) {
            const uint8_t *p = W + (r + i) * ws + b * BB;
            Q[i] = a32_unpack256(type, p);
            if (type == GG_Q8_0) { S[i] = Q[i]; Q[i] = _mm256_sign_epi8(Q[i], Q[i]); }
            DW[i] = _mm256_set1_ps(ldh(p));
            if (HAS_M) MW[i] = _mm256_set1_ps(ldh(p + 2));
        }
        for (int t = 0; t < T; ++t) {
            const uint8_t *xr = X + (m + t) * xs;
            const __m256i a = _mm256_loadu_si256((const __m256i *)(xr + b * 32));
            const __m256 dx = _mm256_loadu_ps((const float *)(xr + L->o_dpat) + b * 8);
            for (int i = 0; i < R; ++i) {
                __m256i p16 = type == GG_Q8_0 ? _mm256_maddubs_epi16(Q[i], _mm256_sign_epi8(a, S[i]))
                                              : _mm256_maddubs_epi16(Q[i], a);
                __m256i s = _mm256_madd_epi16(p16, ones);
                if (HAS_C) s = _mm256_add_epi32(s, _mm256_loadu_si256((const __m256i *)((const int32_t *)(xr + L->o_cpat) + b * 8)));
                acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(DW[i], dx), acc[i][t]);
                if (HAS_M) acc[i][t] = _mm256_fmadd_ps(MW[i], _mm256_loadu_ps((const float *)(xr + L->o_spat) + b * 8), acc[i][t]);
            }
        }
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) Y[(m + t) * ldy + r + i] = hsum256_ps(acc[i][t]);
}

GG_INLINE void a32_kernel256(const int type, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                             const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const a32_lay_t L = a32_lay(K);
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) a32_tile256(type, 2, 4, W, ws, r, X, xs, &L, m, Y, ldy);
        for (; r < r1; ++r) a32_tile256(type, 1, 4, W, ws, r, X, xs, &L, m, Y, ldy);
    }
    for (; m < M; ++m) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) a32_tile256(type, 4, 1, W, ws, r, X, xs, &L, m, Y, ldy);
        for (; r < r1; ++r) a32_tile256(type, 1, 1, W, ws, r, X, xs, &L, m, Y, ldy);
    }
}

#define DEF_A32_256(NAME, TYPE)                                                                          \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        a32_kernel256(TYPE, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                          \
    }
DEF_A32_256(k_q4_0_avx2, GG_Q4_0)
DEF_A32_256(k_q4_1_avx2, GG_Q4_1)
DEF_A32_256(k_q5_0_avx2, GG_Q5_0)
DEF_A32_256(k_q5_1_avx2, GG_Q5_1)
DEF_A32_256(k_q8_0_avx2, GG_Q8_0)

GG_INLINE __m256 f_load256(const int type, const uint8_t *w, int64_t k, int64_t K) {
    if (k + 8 <= K) {
        if (type == GG_F32) return _mm256_loadu_ps((const float *)w + k);
        const __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * k));
        if (type == GG_F16) return _mm256_cvtph_ps(h);
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    float tmp[8] = {0};
    for (int64_t j = k; j < K; ++j) {
        if (type == GG_F32) memcpy(&tmp[j - k], w + 4 * j, 4);
        else if (type == GG_F16) tmp[j - k] = fp16_to_f32(ld16(w + 2 * j));
        else tmp[j - k] = f32_from_bits((uint32_t)ld16(w + 2 * j) << 16);
    }
    return _mm256_loadu_ps(tmp);
}

GG_INLINE void f_tile256(const int type, const int R, const int T, const uint8_t *W, size_t ws, int64_t r, int64_t K,
                         const uint8_t *X, size_t xs, int64_t m, float *Y, int64_t ldy) {
    __m256 acc[4][4];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
        __m256 w[4];
        for (int i = 0; i < R; ++i) w[i] = f_load256(type, W + (r + i) * ws, k, K);
        for (int t = 0; t < T; ++t) {
            const __m256 xv = _mm256_loadu_ps((const float *)(X + (m + t) * xs) + k);
            for (int i = 0; i < R; ++i) acc[i][t] = _mm256_fmadd_ps(w[i], xv, acc[i][t]);
        }
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) Y[(m + t) * ldy + r + i] = hsum256_ps(acc[i][t]);
}

GG_INLINE void f_kernel256(const int type, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                           const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) f_tile256(type, 2, 4, W, ws, r, K, X, xs, m, Y, ldy);
        for (; r < r1; ++r) f_tile256(type, 1, 4, W, ws, r, K, X, xs, m, Y, ldy);
    }
    for (; m < M; ++m) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) f_tile256(type, 4, 1, W, ws, r, K, X, xs, m, Y, ldy);
        for (; r < r1; ++r) f_tile256(type, 1, 1, W, ws, r, K, X, xs, m, Y, ldy);
    }
}

#define DEF_F_256(NAME, TYPE)                                                                            \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        f_kernel256(TYPE, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                            \
    }
DEF_F_256(k_f32_avx2, GG_F32)
DEF_F_256(k_f16_avx2, GG_F16)
DEF_F_256(k_bf16_avx2, GG_BF16)

/* ---- legacy 32-blocks in llama.cpp's exact accumulation order (see k_a32_scalar): the
 *      8-lane-per-output structure is kept; vectorized across 8 rows (scales gathered) and
 *      unrolled over tokens instead of across blocks. */
#if GG_AVX512
#define EX_VNNI 1
#else
#define EX_VNNI 0
#endif

GG_INLINE __m128i ex_lo16(__m256i g) { /* low 16 bits of 8 dwords -> 8 words */
#if GG_AVX512
    return _mm256_cvtepi32_epi16(g);
#else
    const __m256i lo = _mm256_and_si256(g, _mm256_set1_epi32(0xffff));
    return _mm_packus_epi32(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
#endif
}

GG_INLINE __m256i ex_unpack(const int type, const uint8_t *b) {
#if GG_AVX512
    if (type != GG_Q8_0) {
        const int QO = type == GG_Q4_0 ? 2 : type == GG_Q4_1 ? 4 : type == GG_Q5_0 ? 6 : 8;
        const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + QO)));
        __m256i q = _mm256_and_si256(_mm256_srlv_epi16(t, _mm256_setr_epi64x(0, 0, 0x0004000400040004LL, 0x0004000400040004LL)),
                                     _mm256_set1_epi8(0x0f));
        if (type == GG_Q5_0 || type == GG_Q5_1)
            q = _mm256_mask_add_epi8(q, (__mmask32)ld32(b + (type == GG_Q5_0 ? 2 : 4)), q, _mm256_set1_epi8(16));
        return q;
    }
#endif
    return a32_unpack256(type, b);
}

GG_INLINE __m128 ex_hsum8(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_add_ss(r, _mm_movehdup_ps(r));
}

GG_INLINE void ex_tile(const int type, const int T, const uint8_t *W, size_t ws, int64_t r, int nrows, int64_t nb,
                       const uint8_t *X, size_t xs, const a32_lay_t *L, int64_t m, float *Y, int64_t ldy) {
    const int BB = type == GG_Q4_0 ? 18 : type == GG_Q4_1 ? 20 : type == GG_Q5_0 ? 22 : type == GG_Q5_1 ? 24 : 34;
    const int HAS_M = type == GG_Q4_1 || type == GG_Q5_1;
    const int HAS_C = EX_VNNI ? (type == GG_Q4_0 || type == GG_Q5_0 || type == GG_Q8_0) : (type == GG_Q4_0 || type == GG_Q5_0);
    enum { CH = 64 };
    const uint8_t *rows[8];
    for (int i = 0; i < 8; ++i) rows[i] = W + (r + (i < nrows ? i : nrows - 1)) * ws;
    const size_t pf = 8 * ws > GG_PF_EX ? 8 * ws : GG_PF_EX;
    __m256 acc[8][2], sm[2];
    float dd[CH][2][8] __attribute__((aligned(32))); /* d_w*d_x per block, token, row */
    for (int i = 0; i < 8; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
    for (int t = 0; t < T; ++t) sm[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b0 = 0; b0 < nb; b0 += CH) {
        const int nc = (int)(nb - b0 < CH ? nb - b0 : CH);
        /* pre-pass: scales of the 8 rows, products with the activation scales, the m*s chains */
        for (int c = 0; c < nc; ++c) {
            const int64_t b = b0 + c;
            const __m256i G = _mm256_setr_epi32((int)ld32(rows[0] + b * BB), (int)ld32(rows[1] + b * BB), (int)ld32(rows[2] + b * BB),
                                                (int)ld32(rows[3] + b * BB), (int)ld32(rows[4] + b * BB), (int)ld32(rows[5] + b * BB),
                                                (int)ld32(rows[6] + b * BB), (int)ld32(rows[7] + b * BB));
            const __m256 d8 = _mm256_cvtph_ps(ex_lo16(G));
            __m256 m8 = _mm256_setzero_ps();
            if (HAS_M) m8 = _mm256_cvtph_ps(ex_lo16(_mm256_srli_epi32(G, 16)));
            for (int t = 0; t < T; ++t) {
                const uint8_t *xr = X + (m + t) * xs;
                _mm256_store_ps(dd[c][t], _mm256_mul_ps(d8, _mm256_set1_ps(((const float *)(xr + L->o_d))[b])));
                if (HAS_M) sm[t] = _mm256_fmadd_ps(m8, _mm256_set1_ps(((const float *)(xr + L->o_s))[b]), sm[t]);
            }
        }
        for (int c = 0; c < nc; ++c) {
            const int64_t b = b0 + c;
            __m256i A[2], Cc[2];
            for (int t = 0; t < T; ++t) {
                const uint8_t *xr = X + (m + t) * xs;
                A[t] = _mm256_loadu_si256((const __m256i *)(xr + b * 32));
                Cc[t] = HAS_C ? _mm256_loadu_si256((const __m256i *)((const int32_t *)(xr + L->o_cpat) + b * 8)) : _mm256_setzero_si256();
            }
            for (int i = 0; i < 8; ++i) { /* rows past nrows repeat the last row (not stored) */
                const uint8_t *bp = rows[i] + b * BB;
                if (!(b & 1)) _mm_prefetch((const char *)bp + pf, _MM_HINT_T0); /* same spot, next 8-row tile */
                __m256i q = ex_unpack(type, bp);  /* u8 quants; Q8_0: the signed weights */
#if EX_VNNI
                if (type == GG_Q8_0) q = _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
#else
                __m256i sw = q;
                if (type == GG_Q8_0) q = _mm256_sign_epi8(q, q);
#endif
                for (int t = 0; t < T; ++t) {
#if EX_VNNI
                    const __m256i S = _mm256_dpbusd_epi32(Cc[t], q, A[t]);
#else
                    __m256i S;
                    if (type == GG_Q8_0) S = _mm256_madd_epi16(_mm256_maddubs_epi16(q, _mm256_sign_epi8(A[t], sw)), ones);
                    else S = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(q, A[t]), ones), Cc[t]);
#endif
                    acc[i][t] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dd[c][t][i]), _mm256_cvtepi32_ps(S), acc[i][t]);
                }
            }
        }
    }
    (void)ones;
    for (int t = 0; t < T; ++t) {
        float smv[8];
        _mm256_storeu_ps(smv, sm[t]);
        for (int i = 0; i < nrows; ++i) {
            const float h = _mm_cvtss_f32(ex_hsum8(acc[i][t]));
            Y[(m + t) * ldy + r + i] = HAS_M ? h + smv[i] : h;
        }
    }
}

GG_INLINE void ex_kernel(const int type, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                         const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const a32_lay_t L = a32_lay(K);
    for (int64_t r = r0; r < r1; r += 8) {
        const int nrows = (int)(r1 - r < 8 ? r1 - r : 8);
        int64_t m = 0;
        for (; m + 2 <= M; m += 2) ex_tile(type, 2, W, ws, r, nrows, L.nb, X, xs, &L, m, Y, ldy);
        if (m < M) ex_tile(type, 1, W, ws, r, nrows, L.nb, X, xs, &L, m, Y, ldy);
    }
}

#define DEF_A32_256X(NAME, TYPE, FAST)                                                                   \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        if (g_exact) ex_kernel(TYPE, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                 \
        else FAST(W, ws, r0, r1, K, X, xs, M, Y, ldy);                                                    \
    }
DEF_A32_256X(k_q4_0_avx2x, GG_Q4_0, k_q4_0_avx2)
DEF_A32_256X(k_q4_1_avx2x, GG_Q4_1, k_q4_1_avx2)
DEF_A32_256X(k_q5_0_avx2x, GG_Q5_0, k_q5_0_avx2)
DEF_A32_256X(k_q5_1_avx2x, GG_Q5_1, k_q5_1_avx2)
DEF_A32_256X(k_q8_0_avx2x, GG_Q8_0, k_q8_0_avx2)

/* ---- K-quants (AVX2): a superblock as 8 registers of 32 unsigned quants (natural order) and 8
 *      registers of int16 scale words; per activation row 8x (maddubs + madd), like ggml's AVX2 code. */
typedef struct {
    __m256i Q[8], SP[8];
    __m256i sc16;   /* Q6_K/Q3_K: the 16 scales as int16 (for the offset correction via bsums) */
    __m256i mins;   /* Q4_K/Q5_K: 8 mins (low 128 bits); Q2_K: 16 mins */
    float d, dmin;
} kblk2_t;

GG_INLINE __m256i pair_scales256(int a, int b) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)a)), _mm_set1_epi16((short)b), 1);
}

GG_INLINE void kq_unpack256(const int type, const uint8_t *b, kblk2_t *o) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), m30 = _mm256_set1_epi8(0x30);
    const __m256i one = _mm256_set1_epi8(1);
    if (type == GG_Q4_K || type == GG_Q5_K) {
        const int is5 = type == GG_Q5_K;
        o->d = ldh(b);
        o->dmin = ldh(b + 2);
        uint8_t sm[16];
        const __m128i smv = q4k_scales_sse(b + 4);
        _mm_storeu_si128((__m128i *)sm, smv);
        o->mins = _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(smv, 8)));
        const uint8_t *qs = b + (is5 ? 48 : 16);
        const __m256i qh = is5 ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (is5) {
                const __m128i c0 = _mm_cvtsi32_si128(2 * j), c1 = _mm_cvtsi32_si128(2 * j + 1);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, c0), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, c1), one), 4));
            }
            o->Q[2 * j] = lo;
            o->Q[2 * j + 1] = hi;
            o->SP[2 * j] = _mm256_set1_epi16(sm[2 * j]);
            o->SP[2 * j + 1] = _mm256_set1_epi16(sm[2 * j + 1]);
        }
    } else if (type == GG_Q6_K) {
        o->d = ldh(b + 208);
        o->dmin = 0.0f;
        const int8_t *sc = (const int8_t *)(b + 192);
        o->sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        for (int h = 0; h < 2; ++h) {
            const __m256i L0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h));
            const __m256i L1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
            const __m256i H = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
            o->Q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
            o->Q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
            o->Q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_and_si256(H, m30));
            o->Q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
        }
        for (int i = 0; i < 8; ++i) o->SP[i] = pair_scales256(sc[2 * i], sc[2 * i + 1]);
    } else if (type == GG_Q3_K) {
        o->d = ldh(b + 108);
        o->dmin = 0.0f;
        int8_t sc[16];
        q3k_scales(b + 96, sc);
        o->sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        const __m256i HM = _mm256_loadu_si256((const __m256i *)b);
        for (int k = 0; k < 2; ++k) {
            const __m256i QS = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * k));
            for (int j = 0; j < 4; ++j) {
                const __m256i q = _mm256_and_si256(_mm256_srl_epi16(QS, _mm_cvtsi32_si128(2 * j)), m3);
                const __m256i h = _mm256_and_si256(_mm256_srl_epi16(HM, _mm_cvtsi32_si128(4 * k + j)), one);
                o->Q[4 * k + j] = _mm256_or_si256(q, _mm256_slli_epi16(h, 2));
            }
        }
        for (int i = 0; i < 8; ++i) o->SP[i] = pair_scales256(sc[2 * i], sc[2 * i + 1]);
    } else { /* Q2_K */
        o->d = ldh(b + 80);
        o->dmin = ldh(b + 82);
        const __m128i s = _mm_loadu_si128((const __m128i *)b);
        o->mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0x0f)));
        for (int k = 0; k < 2; ++k) {
            const __m256i QS = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * k));
            for (int j = 0; j < 4; ++j) o->Q[4 * k + j] = _mm256_and_si256(_mm256_srl_epi16(QS, _mm_cvtsi32_si128(2 * j)), m3);
        }
        for (int i = 0; i < 8; ++i) o->SP[i] = pair_scales256(b[2 * i] & 0xf, b[2 * i + 1] & 0xf);
    }
}

GG_INLINE void kq_tile256(const int type, const int T, const uint8_t *W, size_t ws, int bbytes, int64_t r, int64_t nsb,
                          const uint8_t *X, size_t xs, int64_t m, float *Y, int64_t ldy) {
    __m256 acc[4];
    __m128 accm[4];
    for (int t = 0; t < T; ++t) { acc[t] = _mm256_setzero_ps(); accm[t] = _mm_setzero_ps(); }
    for (int64_t sb = 0; sb < nsb; ++sb) {
        kblk2_t k;
        kq_unpack256(type, W + r * ws + sb * bbytes, &k);
        for (int t = 0; t < T; ++t) {
            const uint8_t *xb = X + (m + t) * xs + sb * Q8K_SB_BYTES;
            float xd;
            memcpy(&xd, xb, 4);
            __m256i s = _mm256_setzero_si256();
            for (int i = 0; i < 8; ++i)
                s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(k.Q[i], _mm256_loadu_si256((const __m256i *)(xb + Q8K_O_QS + 32 * i))), k.SP[i]));
            if (type == GG_Q6_K || type == GG_Q3_K) {
                const __m256i c = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(xb + Q8K_O_BSUMS)), k.sc16);
                s = _mm256_sub_epi32(s, type == GG_Q6_K ? _mm256_slli_epi32(c, 5) : _mm256_slli_epi32(c, 2));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(xd * k.d), acc[t]);
            if (type == GG_Q4_K || type == GG_Q5_K) {
                const __m128i pm = _mm_madd_epi16(_mm256_castsi256_si128(k.mins), _mm_loadu_si128((const __m128i *)(xb + Q8K_O_BSUM32)));
                accm[t] = _mm_fmadd_ps(_mm_set1_ps(-xd * k.dmin), _mm_cvtepi32_ps(pm), accm[t]);
            } else if (type == GG_Q2_K) {
                const __m256i pm = _mm256_madd_epi16(k.mins, _mm256_loadu_si256((const __m256i *)(xb + Q8K_O_BSUMS)));
                accm[t] = _mm_fmadd_ps(_mm_set1_ps(-xd * k.dmin), _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(pm), _mm256_extracti128_si256(pm, 1))), accm[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        __m128 a = accm[t];
        a = _mm_add_ps(a, _mm_movehl_ps(a, a));
        a = _mm_add_ss(a, _mm_movehdup_ps(a));
        Y[(m + t) * ldy + r] = hsum256_ps(acc[t]) + _mm_cvtss_f32(a);
    }
}

GG_INLINE void kq_kernel256(const int type, const int bbytes, const uint8_t *W, size_t ws, int64_t r0, int64_t r1,
                            int64_t K, const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const int64_t nsb = K / 256;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4)
        for (int64_t r = r0; r < r1; ++r) kq_tile256(type, 4, W, ws, bbytes, r, nsb, X, xs, m, Y, ldy);
    for (; m < M; ++m)
        for (int64_t r = r0; r < r1; ++r) kq_tile256(type, 1, W, ws, bbytes, r, nsb, X, xs, m, Y, ldy);
}

#define DEF_KQ_256(NAME, TYPE, BB)                                                                       \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        kq_kernel256(TYPE, BB, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                       \
    }
DEF_KQ_256(k_q2_k_avx2, GG_Q2_K, 84)
DEF_KQ_256(k_q3_k_avx2, GG_Q3_K, 110)
DEF_KQ_256(k_q4_k_avx2, GG_Q4_K, 144)
DEF_KQ_256(k_q5_k_avx2, GG_Q5_K, 176)
DEF_KQ_256(k_q6_k_avx2, GG_Q6_K, 210)

#endif /* GG_AVX2 */

/* ------------------------------------------------------------------------------------------ */
/* AVX-512 kernels                                                                             */
/* ------------------------------------------------------------------------------------------ */
#if GG_AVX512

#ifndef GG_PF
#define GG_PF 2048 /* software prefetch distance (bytes ahead in each weight row) */
#endif

/* per legacy type: byte permutation of a loaded pair of blocks, the d and m word indices */
static uint8_t g_iq[5][64];
static uint16_t g_id[5][32];
static uint16_t g_im[5][32];
/* K-quant scale patterns: words of Q-register j come from scale index */
static uint16_t g_k32[4][32]; /* sub-blocks of 32: [2j x16, 2j+1 x16] */
static uint16_t g_k16[4][32]; /* sub-blocks of 16: [4j x8, 4j+1 x8, 4j+2 x8, 4j+3 x8] */

static inline int a32_slot(int type) {
    return type == GG_Q4_0 ? 0 : type == GG_Q4_1 ? 1 : type == GG_Q5_0 ? 2 : type == GG_Q5_1 ? 3 : 4;
}

static void init_avx512_tables(void) {
    static const int BBs[5] = {18, 20, 22, 24, 34}, QOs[5] = {2, 4, 6, 8, 2};
    for (int s = 0; s < 5; ++s) {
        const int BB = BBs[s], QO = QOs[s];
        for (int j = 0; j < 64; ++j) {
            if (s == 4) { /* Q8_0: permutex2var over 128 bytes: block0 qs at 2.., block1 qs at 36.. */
                g_iq[s][j] = (uint8_t)(j < 32 ? 2 + j : 36 + (j - 32));
            } else {
                const int half = j / 32, jj = j % 16;
                g_iq[s][j] = (uint8_t)(half * BB + QO + jj);
            }
        }
        for (int j = 0; j < 32; ++j) {
            g_id[s][j] = (uint16_t)(j < 8 ? 0 : j < 16 ? BB / 2 : 0);
            g_im[s][j] = (uint16_t)(j < 8 ? 1 : j < 16 ? BB / 2 + 1 : 0);
        }
    }
    for (int j = 0; j < 4; ++j)
        for (int w = 0; w < 32; ++w) {
            g_k32[j][w] = (uint16_t)(2 * j + w / 16);
            g_k16[j][w] = (uint16_t)(4 * j + w / 8);
        }
}

GG_INLINE void a32_unpack512(const int type, const uint8_t *p, const int full, const __m512i iq, const __m512i id,
                             const __m512i im, __m512i *Q, __m512 *DW, __m512 *MW) {
    const int BB = type == GG_Q4_0 ? 18 : type == GG_Q4_1 ? 20 : type == GG_Q5_0 ? 22 : type == GG_Q5_1 ? 24 : 34;
    __m512i L;
    if (type == GG_Q8_0) {
        L = _mm512_maskz_loadu_epi8(full ? ~0ULL : ((1ULL << 34) - 1), p);
        const __m512i H = _mm512_maskz_loadu_epi8(full ? 0xfULL : 0ULL, p + 64);
        *Q = _mm512_xor_si512(_mm512_permutex2var_epi8(L, iq, H), _mm512_set1_epi8((char)0x80));
    } else {
        L = _mm512_maskz_loadu_epi8(full ? ((1ULL << (2 * BB)) - 1) : ((1ULL << BB) - 1), p);
        __m512i q = _mm512_permutexvar_epi8(iq, L);
        q = _mm512_mask_srli_epi16(q, 0xff00ff00u, q, 4);
        q = _mm512_and_si512(q, _mm512_set1_epi8(0x0f));
        if (type == GG_Q5_0 || type == GG_Q5_1) {
            const int QH = type == GG_Q5_0 ? 2 : 4;
            const uint64_t h0 = ld32(p + QH);
            const uint64_t h1 = full ? ld32(p + BB + QH) : 0;
            q = _mm512_mask_add_epi8(q, _cvtu64_mask64(h0 | (h1 << 32)), q, _mm512_set1_epi8(16));
        }
        *Q = q;
    }
    *DW = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(id, L)));
    if (type == GG_Q4_1 || type == GG_Q5_1)
        *MW = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_maskz_permutexvar_epi16(0x0101u, im, L)));
}

GG_INLINE void a32_tile512(const int type, const int R, const int T, const uint8_t *W, size_t ws, int64_t r,
                           const uint8_t *X, size_t xs, const a32_lay_t *L, int64_t m, float *Y, int64_t ldy,
                           const __m512i iq, const __m512i id, const __m512i im) {
    const int BB = type == GG_Q4_0 ? 18 : type == GG_Q4_1 ? 20 : type == GG_Q5_0 ? 22 : type == GG_Q5_1 ? 24 : 34;
    const int HAS_M = type == GG_Q4_1 || type == GG_Q5_1;
    const int HAS_C = type == GG_Q4_0 || type == GG_Q5_0 || type == GG_Q8_0;
    __m512 acc[4][4];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = _mm512_setzero_ps();
    const int64_t npair = L->nb / 2, nsteps = (L->nb + 1) / 2;
    for (int64_t p = 0; p < nsteps; ++p) {
        const int full = p < npair;
        __m512i Q[4];
        __m512 DW[4], MW[4];
        for (int i = 0; i < R; ++i) {
            const uint8_t *wp = W + (r + i) * ws + p * 2 * BB;
            _mm_prefetch((const char *)wp + GG_PF, _MM_HINT_T0);
            a32_unpack512(type, wp, full, iq, id, im, &Q[i], &DW[i], &MW[i]);
        }
        for (int t = 0; t < T; ++t) {
            const uint8_t *xr = X + (m + t) * xs;
            const __m512i a = _mm512_loadu_si512(xr + p * 64);
            const __m512 dx = _mm512_loadu_ps((const float *)(xr + L->o_dpat) + p * 16);
            const __m512i c = HAS_C ? _mm512_loadu_si512((const int32_t *)(xr + L->o_cpat) + p * 16) : _mm512_setzero_si512();
            for (int i = 0; i < R; ++i) {
                const __m512i s = _mm512_dpbusd_epi32(c, Q[i], a);
                acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(DW[i], dx), acc[i][t]);
                if (HAS_M) acc[i][t] = _mm512_fmadd_ps(MW[i], _mm512_loadu_ps((const float *)(xr + L->o_spat) + p * 16), acc[i][t]);
            }
        }
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) Y[(m + t) * ldy + r + i] = _mm512_reduce_add_ps(acc[i][t]);
}

GG_INLINE void a32_kernel512(const int type, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                             const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const a32_lay_t L = a32_lay(K);
    const int s = a32_slot(type);
    const __m512i iq = _mm512_loadu_si512(g_iq[s]);
    const __m512i id = _mm512_loadu_si512(g_id[s]);
    const __m512i im = _mm512_loadu_si512(g_im[s]);
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) a32_tile512(type, 2, 4, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
        for (; r < r1; ++r) a32_tile512(type, 1, 4, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
    }
    const int64_t rem = M - m;
    if (rem == 3) {
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) a32_tile512(type, 2, 3, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
        for (; r < r1; ++r) a32_tile512(type, 1, 3, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
    } else if (rem == 2) {
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) a32_tile512(type, 2, 2, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
        for (; r < r1; ++r) a32_tile512(type, 1, 2, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
    } else if (rem == 1) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) a32_tile512(type, 4, 1, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
        for (; r < r1; ++r) a32_tile512(type, 1, 1, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
    }
}

/* ---- Q4_1, groups of 16 blocks read as 5 raw zmm (no byte permutes); tail blocks as pairs */
static int32_t g_g20_i01[16], g_g20_i23[16], g_g20_i4[16], g_g20_l2b[5][16];

static void init_g20_tables(void) {
    static const int hdr[16] = {0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75};
    memset(g_g20_i01, 0, sizeof g_g20_i01);
    memset(g_g20_i23, 0, sizeof g_g20_i23);
    memset(g_g20_i4, 0, sizeof g_g20_i4);
    /* block b's header dword is lane hdr[b] of the 80 lanes of Z0..Z4 */
    for (int b = 0; b < 7; ++b) g_g20_i01[b] = hdr[b];            /* Z0 lanes 0..15, Z1 -> 16.. */
    for (int b = 7; b < 13; ++b) g_g20_i23[b] = hdr[b] - 32;      /* Z2 -> 0.., Z3 -> 16.. */
    for (int b = 13; b < 16; ++b) g_g20_i4[b] = hdr[b] - 64;      /* Z4 */
    for (int r = 0; r < 5; ++r)
        for (int l = 0; l < 16; ++l) g_g20_l2b[r][l] = (16 * r + l) / 5;
}

GG_INLINE void q41g_tile512(const int R, const int T, const uint8_t *W, size_t ws, int64_t r, const uint8_t *X,
                            size_t xs, const a32_lay_t *L, int64_t m, float *Y, int64_t ldy, const __m512i iq,
                            const __m512i id, const __m512i im) {
    __m512 acc[2][4], accm[2][4];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) { acc[i][t] = _mm512_setzero_ps(); accm[i][t] = _mm512_setzero_ps(); }
    const __m512i i01 = _mm512_loadu_si512(g_g20_i01), i23 = _mm512_loadu_si512(g_g20_i23);
    const __m512i i4 = _mm512_loadu_si512(g_g20_i4), m4 = _mm512_set1_epi8(0x0f);
    for (int64_t g = 0; g < L->ng; ++g) {
        __m512i Z[2][5];
        __m512 dd[2][4], mw[2];
        for (int i = 0; i < R; ++i) {
            const uint8_t *wp = W + (r + i) * ws + g * 320;
            for (int k = 0; k < 5; ++k) {
                _mm_prefetch((const char *)wp + GG_PF + 64 * k, _MM_HINT_T0);
                Z[i][k] = _mm512_loadu_si512(wp + 64 * k);
            }
            __m512i G = _mm512_mask_blend_epi32(0x1f80, _mm512_permutex2var_epi32(Z[i][0], i01, Z[i][1]),
                                                _mm512_permutex2var_epi32(Z[i][2], i23, Z[i][3]));
            G = _mm512_mask_permutexvar_epi32(G, 0xe000, i4, Z[i][4]);
            const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(G));
            mw[i] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(G, 16)));
            for (int t = 0; t < T; ++t) {
                const float *xg = (const float *)(X + (m + t) * xs + L->o_g20 + g * G20_BYTES + 640);
                dd[i][t] = _mm512_mul_ps(dw, _mm512_loadu_ps(xg));
                accm[i][t] = _mm512_fmadd_ps(mw[i], _mm512_loadu_ps(xg + 16), accm[i][t]);
            }
        }
        for (int k = 0; k < 5; ++k) {
            const __m512i l2b = _mm512_loadu_si512(g_g20_l2b[k]);
            for (int i = 0; i < R; ++i) {
                const __m512i lo = _mm512_and_si512(Z[i][k], m4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(Z[i][k], 4), m4);
                for (int t = 0; t < T; ++t) {
                    const uint8_t *xg = X + (m + t) * xs + L->o_g20 + g * G20_BYTES;
                    __m512i I = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(xg + 64 * k));
                    I = _mm512_dpbusd_epi32(I, hi, _mm512_loadu_si512(xg + 320 + 64 * k));
                    acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I), _mm512_permutexvar_ps(l2b, dd[i][t]), acc[i][t]);
                }
            }
        }
    }
    /* remaining blocks (nb % 16) as pairs, natural layout */
    const int64_t npair = L->nb / 2, nsteps = (L->nb + 1) / 2;
    for (int64_t p = L->ng * 8; p < nsteps; ++p) {
        const int full = p < npair;
        __m512i Q[2];
        __m512 DW[2], MW[2];
        for (int i = 0; i < R; ++i)
            a32_unpack512(GG_Q4_1, W + (r + i) * ws + p * 40, full, iq, id, im, &Q[i], &DW[i], &MW[i]);
        for (int t = 0; t < T; ++t) {
            const uint8_t *xr = X + (m + t) * xs;
            const __m512i a = _mm512_loadu_si512(xr + p * 64);
            const __m512 dx = _mm512_loadu_ps((const float *)(xr + L->o_dpat) + p * 16);
            const __m512 sx = _mm512_loadu_ps((const float *)(xr + L->o_spat) + p * 16);
            for (int i = 0; i < R; ++i) {
                const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), Q[i], a);
                acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(DW[i], dx), acc[i][t]);
                accm[i][t] = _mm512_fmadd_ps(MW[i], sx, accm[i][t]);
            }
        }
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) Y[(m + t) * ldy + r + i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][t], accm[i][t]));
}

static void k_q4_1g_avx512(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,
                           size_t xs, int64_t M, float *Y, int64_t ldy) {
    const a32_lay_t L = a32_lay(K);
    const int s = a32_slot(GG_Q4_1);
    const __m512i iq = _mm512_loadu_si512(g_iq[s]);
    const __m512i id = _mm512_loadu_si512(g_id[s]);
    const __m512i im = _mm512_loadu_si512(g_im[s]);
    int64_t m = 0;
    for (; m + 4 <= M; m += 4)
        for (int64_t r = r0; r < r1; ++r) q41g_tile512(1, 4, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
    const int64_t rem = M - m;
    if (rem == 3) {
        for (int64_t r = r0; r < r1; ++r) q41g_tile512(1, 3, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
    } else if (rem == 2) {
        for (int64_t r = r0; r < r1; ++r) q41g_tile512(1, 2, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
    } else if (rem == 1) {
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) q41g_tile512(2, 1, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
        for (; r < r1; ++r) q41g_tile512(1, 1, W, ws, r, X, xs, &L, m, Y, ldy, iq, id, im);
    }
}

#define DEF_A32_512(NAME, TYPE)                                                                          \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        a32_kernel512(TYPE, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                          \
    }
DEF_A32_512(k_q4_0_avx512, GG_Q4_0)
DEF_A32_512(k_q5_0_avx512, GG_Q5_0)
DEF_A32_512(k_q5_1_avx512, GG_Q5_1)
DEF_A32_512(k_q8_0_avx512, GG_Q8_0)

/* ---- panel GEMM for the 32-blocks (M >= GG_PANEL_M): 16 rows x one block are unpacked to int8,
 * transposed to the VNNI layout (lane = row, 4 consecutive k per lane) and multiplied with the
 * activation quants broadcast 4 bytes at a time (as x+128, unsigned; the -128*sum(w) correction is
 * the accumulator's start value). 8 tokens per tile, outputs stored 16 rows at a time. */
#ifndef GG_PANEL_M
#define GG_PANEL_M 8
#endif
#define PANEL_BLK 704 /* 8 x 64 weight bytes, corr[16] int32, dw[16], mw[16] */

static int32_t g_tr1[2][16], g_tr2[2][16], g_tr3[2][16];

static void init_panel_tables(void) {
    for (int c = 0; c < 2; ++c)
        for (int kk = 0; kk < 4; ++kk)
            for (int q = 0; q < 4; ++q) g_tr1[c][4 * kk + q] = (q / 2) * 16 + 8 * (q % 2) + 4 * c + kk;
    for (int e = 0; e < 2; ++e)
        for (int kk2 = 0; kk2 < 2; ++kk2)
            for (int r = 0; r < 8; ++r) g_tr2[e][8 * kk2 + r] = (r / 4) * 16 + 4 * (2 * e + kk2) + r % 4;
    for (int kk2 = 0; kk2 < 2; ++kk2)
        for (int i = 0; i < 16; ++i) g_tr3[kk2][i] = (i / 8) * 16 + 8 * kk2 + (i % 8);
}

/* 16 rows of 8 dwords -> 8 vectors of 16 dwords: O[k][i] = R[i][k] */
GG_INLINE void transpose16x8(const __m256i R[16], __m512i O[8]) {
    __m512i Z[8], A[4][2], B[2][2][2];
    for (int j = 0; j < 8; ++j) Z[j] = _mm512_inserti64x4(_mm512_castsi256_si512(R[2 * j]), R[2 * j + 1], 1);
    const __m512i t10 = _mm512_loadu_si512(g_tr1[0]), t11 = _mm512_loadu_si512(g_tr1[1]);
    for (int a = 0; a < 4; ++a) {
        A[a][0] = _mm512_permutex2var_epi32(Z[2 * a], t10, Z[2 * a + 1]);
        A[a][1] = _mm512_permutex2var_epi32(Z[2 * a], t11, Z[2 * a + 1]);
    }
    const __m512i t20 = _mm512_loadu_si512(g_tr2[0]), t21 = _mm512_loadu_si512(g_tr2[1]);
    for (int b = 0; b < 2; ++b)
        for (int c = 0; c < 2; ++c) {
            B[b][c][0] = _mm512_permutex2var_epi32(A[2 * b][c], t20, A[2 * b + 1][c]);
            B[b][c][1] = _mm512_permutex2var_epi32(A[2 * b][c], t21, A[2 * b + 1][c]);
        }
    const __m512i t30 = _mm512_loadu_si512(g_tr3[0]), t31 = _mm512_loadu_si512(g_tr3[1]);
    for (int c = 0; c < 2; ++c)
        for (int e = 0; e < 2; ++e) {
            O[4 * c + 2 * e + 0] = _mm512_permutex2var_epi32(B[0][c][e], t30, B[1][c][e]);
            O[4 * c + 2 * e + 1] = _mm512_permutex2var_epi32(B[0][c][e], t31, B[1][c][e]);
        }
}

/* signed int8 weights of one 32-block */
GG_INLINE __m256i a32_unpack_s8(const int type, const uint8_t *b) {
    __m256i q = a32_unpack256(type, b);
    if (type == GG_Q4_0) q = _mm256_sub_epi8(q, _mm256_set1_epi8(8));
    if (type == GG_Q5_0) q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
    return q;
}

GG_INLINE void a32_panel_pack(const int type, const uint8_t *W, size_t ws, int64_t r0, int nrows, int64_t nb,
                              uint8_t *panel) {
    const int BB = type == GG_Q4_0 ? 18 : type == GG_Q4_1 ? 20 : type == GG_Q5_0 ? 22 : type == GG_Q5_1 ? 24 : 34;
    const uint8_t *rows[16];
    int32_t vidx[16];
    for (int i = 0; i < 16; ++i) {
        const int ii = i < nrows ? i : nrows - 1;
        rows[i] = W + (r0 + ii) * ws;
        vidx[i] = (int32_t)((size_t)ii * ws);
    }
    const __m512i vi = _mm512_loadu_si512(vidx);
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t b = 0; b < nb; ++b) {
        __m256i R[16];
        __m512i O[8];
        for (int i = 0; i < 16; ++i) R[i] = a32_unpack_s8(type, rows[i] + b * BB);
        transpose16x8(R, O);
        uint8_t *pb = panel + b * PANEL_BLK;
        __m512i sw = _mm512_setzero_si512();
        for (int k = 0; k < 8; ++k) {
            _mm512_storeu_si512(pb + 64 * k, O[k]);
            sw = _mm512_dpbusd_epi32(sw, ones, O[k]);
        }
        _mm512_storeu_si512(pb + 512, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sw, 7)));
        const __m512i G = _mm512_i32gather_epi32(vi, (const void *)(W + r0 * ws + b * BB), 1);
        _mm512_storeu_ps(pb + 576, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(G)));
        _mm512_storeu_ps(pb + 640, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(G, 16))));
    }
}

GG_INLINE void a32_panel_tile(const int type, const int T, const uint8_t *panel, int64_t nb, const uint8_t *X,
                              size_t xs, const a32_lay_t *L, int64_t m, float *Y, int64_t ldy, int64_t r0,
                              __mmask16 smask) {
    const int HAS_M = type == GG_Q4_1 || type == GG_Q5_1;
    __m512 facc[8];
    for (int t = 0; t < T; ++t) facc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t *pb = panel + b * PANEL_BLK;
        __m512i O[8];
        for (int k = 0; k < 8; ++k) O[k] = _mm512_loadu_si512(pb + 64 * k);
        const __m512i corr = _mm512_loadu_si512(pb + 512);
        const __m512 dw = _mm512_loadu_ps(pb + 576);
        __m512i acc[8];
        for (int t = 0; t < T; ++t) acc[t] = corr;
        for (int k = 0; k < 8; ++k)
            for (int t = 0; t < T; ++t) {
                const uint8_t *xu = X + (m + t) * xs + L->o_qsu + b * 32 + 4 * k;
                int32_t v;
                memcpy(&v, xu, 4);
                acc[t] = _mm512_dpbusd_epi32(acc[t], _mm512_set1_epi32(v), O[k]);
            }
        for (int t = 0; t < T; ++t) {
            const uint8_t *xr = X + (m + t) * xs;
            const float dx = ((const float *)(xr + L->o_d))[b];
            facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]), _mm512_mul_ps(dw, _mm512_set1_ps(dx)), facc[t]);
        }
        if (HAS_M) {
            const __m512 mw = _mm512_loadu_ps(pb + 640);
            for (int t = 0; t < T; ++t) {
                const float sx = ((const float *)(X + (m + t) * xs + L->o_s))[b];
                facc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx), facc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(Y + (m + t) * ldy + r0, smask, facc[t]);
}

static __thread uint8_t *tl_panel = NULL;
static __thread size_t tl_panel_size = 0;

static uint8_t *get_panel(size_t need) {
    if (need > tl_panel_size) {
        free(tl_panel);
        tl_panel = NULL;
        tl_panel_size = 0;
        void *p = NULL;
        if (posix_memalign(&p, 64, need)) return NULL;
        tl_panel = p;
        tl_panel_size = need;
    }
    return tl_panel;
}

/* returns 0 when it did the work */
GG_INLINE int a32_panel_kernel(const int type, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                               const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const a32_lay_t L = a32_lay(K);
    uint8_t *panel = get_panel((size_t)L.nb * PANEL_BLK);
    if (!panel) return -1;
    for (int64_t r = r0; r < r1; r += 16) {
        const int nrows = (int)(r1 - r < 16 ? r1 - r : 16);
        const __mmask16 smask = (__mmask16)((1u << nrows) - 1);
        a32_panel_pack(type, W, ws, r, nrows, L.nb, panel);
        int64_t m = 0;
        for (; m + 8 <= M; m += 8) a32_panel_tile(type, 8, panel, L.nb, X, xs, &L, m, Y, ldy, r, smask);
        if (M - m >= 4) { a32_panel_tile(type, 4, panel, L.nb, X, xs, &L, m, Y, ldy, r, smask); m += 4; }
        if (M - m >= 2) { a32_panel_tile(type, 2, panel, L.nb, X, xs, &L, m, Y, ldy, r, smask); m += 2; }
        if (M - m >= 1) { a32_panel_tile(type, 1, panel, L.nb, X, xs, &L, m, Y, ldy, r, smask); m += 1; }
    }
    return 0;
}

/* ---- Q4_1, M = 1, exact order (bit-identical to ggml_vec_dot_q4_1_q8_1 on x86): 16 rows per tile.
 *   Per block: the 16 header dwords gathered -> d_w*d_x of the 16 rows in one zmm and the 16 m*s
 *   chains in one fma; the qs of 4 rows are one zmm (a 128-bit lane per row), nibbles split in place,
 *   2 vpdpbusd against the activation halves broadcast to all 4 lanes. A row's 8 llama.cpp lanes are
 *   lanes 4k..4k+3 of the "lo" accumulator (its lanes 0-3: low nibbles x y[0..15]) and of the "hi"
 *   accumulator (its lanes 4-7): each lane still gets one fma per block, in block order; the final
 *   hsum_float_8 is done with the same adds in the same order. */
#ifndef GG_EX41_PFT
#define GG_EX41_PFT 2 /* prefetch distance in tiles */
#endif
static int32_t g_ex41_dd[4][16];

static void init_ex41_tables(void) {
    for (int g = 0; g < 4; ++g)
        for (int l = 0; l < 16; ++l) g_ex41_dd[g][l] = 4 * g + l / 4;
}

GG_INLINE void ex41_tile16(const uint8_t *W, size_t ws, int64_t r, int nrows, int64_t nb, const uint8_t *xq,
                           const float *xd, const float *xsm, float *Y, const __m512i p0, const __m512i p1,
                           const __m512i p2, const __m512i p3) {
    const uint8_t *rows[16];
    int32_t vidx[16];
    for (int i = 0; i < 16; ++i) {
        const int ii = i < nrows ? i : nrows - 1;
        rows[i] = W + (r + ii) * ws + 4;
        vidx[i] = (int32_t)((size_t)ii * ws);
    }
    const __m512i vi = _mm512_loadu_si512(vidx);
    const uint8_t *base = W + r * ws;
    const size_t span = 16 * ws;
    const int64_t pfl = (int64_t)((span + (size_t)nb * 64 - 1) / ((size_t)nb * 64)); /* lines per block */
    const uint8_t *pfb = base + GG_EX41_PFT * span;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 alo[4], ahi[4], sm = _mm512_setzero_ps();
    for (int g = 0; g < 4; ++g) { alo[g] = _mm512_setzero_ps(); ahi[g] = _mm512_setzero_ps(); }
    for (int64_t b = 0; b < nb; ++b) {
        for (int64_t k = 0; k < pfl; ++k) _mm_prefetch((const char *)pfb + (b * pfl + k) * 64, _MM_HINT_T0);
        const __m512i G = _mm512_i32gather_epi32(vi, (const void *)(base + b * 20), 1);
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(G));
        const __m512 mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(G, 16)));
        const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(xd[b]));
        sm = _mm512_fmadd_ps(mw, _mm512_set1_ps(xsm[b]), sm);
        const __m512i Xl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xq + b * 32)));
        const __m512i Xh = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xq + b * 32 + 16)));
        for (int g = 0; g < 4; ++g) {
            __m512i Z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rows[4 * g] + b * 20)));
            Z = _mm512_inserti32x4(Z, _mm_loadu_si128((const __m128i *)(rows[4 * g + 1] + b * 20)), 1);
            Z = _mm512_inserti32x4(Z, _mm_loadu_si128((const __m128i *)(rows[4 * g + 2] + b * 20)), 2);
            Z = _mm512_inserti32x4(Z, _mm_loadu_si128((const __m128i *)(rows[4 * g + 3] + b * 20)), 3);
            const __m512i lo = _mm512_and_si512(Z, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(Z, 4), m4);
            const __m512i Il = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, Xl);
            const __m512i Ih = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, Xh);
            const __m512 ddg = _mm512_permutexvar_ps(g == 0 ? p0 : g == 1 ? p1 : g == 2 ? p2 : p3, dd);
            alo[g] = _mm512_fmadd_ps(ddg, _mm512_cvtepi32_ps(Il), alo[g]);
            ahi[g] = _mm512_fmadd_ps(ddg, _mm512_cvtepi32_ps(Ih), ahi[g]);
        }
    }
    /* hsum_float_8: res = x[4..7] + x[0..3]; res[0]+res[2], res[1]+res[3]; then their sum; + summs */
    float s[4][16] __attribute__((aligned(64))), smv[16] __attribute__((aligned(64)));
    for (int g = 0; g < 4; ++g) _mm512_store_ps(s[g], _mm512_add_ps(ahi[g], alo[g]));
    _mm512_store_ps(smv, sm);
    for (int i = 0; i < nrows; ++i) {
        const float *q = &s[i / 4][4 * (i % 4)];
        const float a = q[0] + q[2], c = q[1] + q[3];
        Y[r + i] = (a + c) + smv[i];
    }
}

static void ex41_m1(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X, float *Y) {
    const a32_lay_t L = a32_lay(K);
    const __m512i p0 = _mm512_loadu_si512(g_ex41_dd[0]), p1 = _mm512_loadu_si512(g_ex41_dd[1]);
    const __m512i p2 = _mm512_loadu_si512(g_ex41_dd[2]), p3 = _mm512_loadu_si512(g_ex41_dd[3]);
    const float *xd = (const float *)(X + L.o_d), *xsm = (const float *)(X + L.o_s);
    { /* the first tiles of the chunk (the tile loop prefetches the following ones) */
        const int64_t n0 = r1 - r0 < 16 * GG_EX41_PFT ? r1 - r0 : 16 * GG_EX41_PFT;
        const uint8_t *p = W + r0 * ws, *e = W + (r0 + n0 - 1) * ws + (size_t)L.nb * 20;
        for (; p < e; p += 64) _mm_prefetch((const char *)p, _MM_HINT_T0);
    }
    for (int64_t r = r0; r < r1; r += 16) {
        const int nrows = (int)(r1 - r < 16 ? r1 - r : 16);
        ex41_tile16(W, ws, r, nrows, L.nb, X, xd, xsm, Y, p0, p1, p2, p3);
    }
}

#define DEF_A32_512P(NAME, TYPE, DIRECT)                                                                 \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        if (g_exact) {                                                                                   \
            if (TYPE == GG_Q4_1 && M == 1) ex41_m1(W, ws, r0, r1, K, X, Y);                               \
            else ex_kernel(TYPE, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                     \
            return;                                                                                       \
        }                                                                                                 \
        if (M >= GG_PANEL_M) {                                                                           \
            if (a32_panel_kernel(TYPE, W, ws, r0, r1, K, X, xs, M, Y, ldy) != 0) g_kernel_err = -5;        \
            return;                                                                                       \
        }                                                                                                 \
        DIRECT(W, ws, r0, r1, K, X, xs, M, Y, ldy);                                                       \
    }
DEF_A32_512P(k_q4_0_avx512p, GG_Q4_0, k_q4_0_avx512)
DEF_A32_512P(k_q4_1_avx512p, GG_Q4_1, k_q4_1g_avx512)
DEF_A32_512P(k_q5_0_avx512p, GG_Q5_0, k_q5_0_avx512)
DEF_A32_512P(k_q5_1_avx512p, GG_Q5_1, k_q5_1_avx512)
DEF_A32_512P(k_q8_0_avx512p, GG_Q8_0, k_q8_0_avx512)

/* ---- K-quants: one superblock is unpacked into 4 registers of 64 unsigned quants (natural order)
 *      and 4 registers of int16 scale words; per activation row: 4x (maddubs + dpwssd). */

typedef struct {
    __m512i Q[4];
    __m512i SP[4];
    __m512i corr;   /* int16 words multiplying the bsums (zero-point / offset correction), 16 used */
    __m256i mins;   /* Q2_K: 16 words; Q4_K/Q5_K: 8 words (low 128 bits) */
    float d, dmin;
} kblk_t;

GG_INLINE __m512i bcast256(const uint8_t *p) { return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p)); }

GG_INLINE void kq_unpack512(const int type, const uint8_t *b, kblk_t *o) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(3);
    if (type == GG_Q4_K || type == GG_Q5_K) {
        const int is5 = type == GG_Q5_K;
        o->d = ldh(b);
        o->dmin = ldh(b + 2);
        const __m256i sw = _mm256_cvtepu8_epi16(q4k_scales_sse(b + 4));
        o->mins = _mm256_permute2x128_si256(sw, sw, 0x81); /* words 8..15 -> low 128, zero high */
        const __m512i sw5 = _mm512_castsi256_si512(sw);
        const __m512i sh = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
        const uint8_t *qs = b + (is5 ? 48 : 16);
        __m512i HB = _mm512_setzero_si512();
        if (is5) HB = bcast256(b + 16);
        for (int j = 0; j < 4; ++j) {
            o->SP[j] = _mm512_permutexvar_epi16(_mm512_loadu_si512(g_k32[j]), sw5);
            __m512i q = _mm512_and_si512(_mm512_srlv_epi16(bcast256(qs + 32 * j), sh), m4);
            if (is5) {
                const __m512i bp = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * j))),
                                                      _mm256_set1_epi8((char)(1 << (2 * j + 1))), 1);
                q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(HB, bp), q, _mm512_set1_epi8(16));
            }
            o->Q[j] = q;
        }
    } else if (type == GG_Q6_K) {
        o->d = ldh(b + 208);
        o->dmin = 0.0f;
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192)));
        const __m512i sc5 = _mm512_castsi256_si512(sc);
        for (int j = 0; j < 4; ++j) o->SP[j] = _mm512_permutexvar_epi16(_mm512_loadu_si512(g_k16[j]), sc5);
        o->corr = _mm512_castsi256_si512(_mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 5)));
        o->corr = _mm512_inserti64x4(o->corr, _mm256_setzero_si256(), 1);
        const __m512i L0 = _mm512_loadu_si512(b), L1 = _mm512_loadu_si512(b + 64);
        const __m512i H0 = bcast256(b + 128), H1 = bcast256(b + 160);
        const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
        const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        const __m512i m30 = _mm512_set1_epi8(0x30);
        o->Q[0] = _mm512_or_si512(_mm512_and_si512(L0, m4), _mm512_and_si512(_mm512_sllv_epi16(H0, shl), m30));
        o->Q[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L0, 4), m4), _mm512_and_si512(_mm512_srlv_epi16(H0, shr), m30));
        o->Q[2] = _mm512_or_si512(_mm512_and_si512(L1, m4), _mm512_and_si512(_mm512_sllv_epi16(H1, shl), m30));
        o->Q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L1, 4), m4), _mm512_and_si512(_mm512_srlv_epi16(H1, shr), m30));
    } else if (type == GG_Q3_K) {
        o->d = ldh(b + 108);
        o->dmin = 0.0f;
        int8_t s8[16];
        q3k_scales(b + 96, s8);
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)s8));
        const __m512i sc5 = _mm512_castsi256_si512(sc);
        for (int j = 0; j < 4; ++j) o->SP[j] = _mm512_permutexvar_epi16(_mm512_loadu_si512(g_k16[j]), sc5);
        o->corr = _mm512_castsi256_si512(_mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 2)));
        o->corr = _mm512_inserti64x4(o->corr, _mm256_setzero_si256(), 1);
        const __m512i HM = bcast256(b);
        for (int k = 0; k < 2; ++k) {
            const __m512i B = bcast256(b + 32 + 32 * k);
            for (int h = 0; h < 2; ++h) {
                const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * h)), _mm256_set1_epi16((short)(4 * h + 2)), 1);
                __m512i q = _mm512_and_si512(_mm512_srlv_epi16(B, sh), m3);
                const __m512i bp = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * k + 2 * h))),
                                                      _mm256_set1_epi8((char)(1 << (4 * k + 2 * h + 1))), 1);
                q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(HM, bp), q, _mm512_set1_epi8(4));
                o->Q[2 * k + h] = q;
            }
        }
    } else { /* Q2_K */
        o->d = ldh(b + 80);
        o->dmin = ldh(b + 82);
        const __m128i s = _mm_loadu_si128((const __m128i *)b);
        const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(s, _mm_set1_epi8(0x0f)));
        o->mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0x0f)));
        const __m512i sc5 = _mm512_castsi256_si512(sc);
        for (int j = 0; j < 4; ++j) o->SP[j] = _mm512_permutexvar_epi16(_mm512_loadu_si512(g_k16[j]), sc5);
        for (int k = 0; k < 2; ++k) {
            const __m512i B = bcast256(b + 16 + 32 * k);
            for (int h = 0; h < 2; ++h) {
                const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * h)), _mm256_set1_epi16((short)(4 * h + 2)), 1);
                o->Q[2 * k + h] = _mm512_and_si512(_mm512_srlv_epi16(B, sh), m3);
            }
        }
    }
}


GG_INLINE void kq_tile512(const int type, const int R, const int T, const uint8_t *W, size_t ws, int bbytes, int64_t r,
                          int64_t nsb, const uint8_t *X, size_t xs, int64_t m, float *Y, int64_t ldy) {
    __m512 acc[2][4];
    __m128 accm[2][4];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) { acc[i][t] = _mm512_setzero_ps(); accm[i][t] = _mm_setzero_ps(); }
    for (int64_t sb = 0; sb < nsb; ++sb) {
        kblk_t kb[2];
        for (int i = 0; i < R; ++i) {
            const uint8_t *bp = W + (r + i) * ws + sb * bbytes;
            _mm_prefetch((const char *)bp + GG_PF, _MM_HINT_T0);
            _mm_prefetch((const char *)bp + GG_PF + 64, _MM_HINT_T0);
            if (bbytes > 128) _mm_prefetch((const char *)bp + GG_PF + 128, _MM_HINT_T0);
            kq_unpack512(type, bp, &kb[i]);
        }
        for (int t = 0; t < T; ++t) {
            const uint8_t *xb = X + (m + t) * xs + sb * Q8K_SB_BYTES;
            float xd;
            memcpy(&xd, xb, 4);
            const __m512i a0 = _mm512_loadu_si512(xb + Q8K_O_QS), a1 = _mm512_loadu_si512(xb + Q8K_O_QS + 64);
            const __m512i a2 = _mm512_loadu_si512(xb + Q8K_O_QS + 128), a3 = _mm512_loadu_si512(xb + Q8K_O_QS + 192);
            for (int i = 0; i < R; ++i) {
                const kblk_t *k = &kb[i];
                __m512i s;
                if (type == GG_Q6_K || type == GG_Q3_K)
                    s = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(xb + Q8K_O_BSUMS))), k->corr);
                else
                    s = _mm512_setzero_si512();
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(k->Q[0], a0), k->SP[0]);
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(k->Q[1], a1), k->SP[1]);
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(k->Q[2], a2), k->SP[2]);
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(k->Q[3], a3), k->SP[3]);
                acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(xd * k->d), acc[i][t]);
                if (type == GG_Q4_K || type == GG_Q5_K) {
                    const __m128i pm = _mm_madd_epi16(_mm256_castsi256_si128(k->mins), _mm_loadu_si128((const __m128i *)(xb + Q8K_O_BSUM32)));
                    accm[i][t] = _mm_fmadd_ps(_mm_set1_ps(-xd * k->dmin), _mm_cvtepi32_ps(pm), accm[i][t]);
                } else if (type == GG_Q2_K) {
                    const __m256i pm = _mm256_madd_epi16(k->mins, _mm256_loadu_si256((const __m256i *)(xb + Q8K_O_BSUMS)));
                    accm[i][t] = _mm_fmadd_ps(_mm_set1_ps(-xd * k->dmin), _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(pm), _mm256_extracti128_si256(pm, 1))), accm[i][t]);
                }
            }
        }
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) {
            __m128 a = accm[i][t];
            a = _mm_add_ps(a, _mm_movehl_ps(a, a));
            a = _mm_add_ss(a, _mm_movehdup_ps(a));
            Y[(m + t) * ldy + r + i] = _mm512_reduce_add_ps(acc[i][t]) + _mm_cvtss_f32(a);
        }
}

GG_INLINE void kq_kernel512(const int type, const int bbytes, const uint8_t *W, size_t ws, int64_t r0, int64_t r1,
                            int64_t K, const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const int64_t nsb = K / 256;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4)
        for (int64_t r = r0; r < r1; ++r) kq_tile512(type, 1, 4, W, ws, bbytes, r, nsb, X, xs, m, Y, ldy);
    const int64_t rem = M - m;
    if (rem == 3) {
        for (int64_t r = r0; r < r1; ++r) kq_tile512(type, 1, 3, W, ws, bbytes, r, nsb, X, xs, m, Y, ldy);
    } else if (rem == 2) {
        for (int64_t r = r0; r < r1; ++r) kq_tile512(type, 1, 2, W, ws, bbytes, r, nsb, X, xs, m, Y, ldy);
    } else if (rem == 1) {
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) kq_tile512(type, 2, 1, W, ws, bbytes, r, nsb, X, xs, m, Y, ldy);
        for (; r < r1; ++r) kq_tile512(type, 1, 1, W, ws, bbytes, r, nsb, X, xs, m, Y, ldy);
    }
}


/* ---- panel GEMM for the K-quants (M >= GG_PANEL_M): per superblock and 16 rows, the 256 quants
 * (signed: Q6_K q-32, Q3_K q-4) in VNNI layout, per sub-block the int scales, -128*sum(w) and the
 * min pairs, then per token: int sums per sub-block x scale (exact, like ggml), one float fma. */
GG_INLINE int kq_nsub(const int type) { return (type == GG_Q4_K || type == GG_Q5_K) ? 8 : 16; }
GG_INLINE int kq_npair(const int type) { return (type == GG_Q4_K || type == GG_Q5_K) ? 4 : type == GG_Q2_K ? 8 : 0; }
GG_INLINE size_t kq_panel_sb(const int type) {
    return 4096 + (size_t)kq_nsub(type) * 128 + (size_t)kq_npair(type) * 64 + 128;
}

/* 16x16 dword transpose in place */
GG_INLINE void transpose16x16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* now r[4a+b] holds, in each 128-bit lane L, rows 4a..4a+3 of column 4L+b */
    for (int i = 0; i < 4; ++i) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);       /* lanes 0,2 of r[i], 0,2 of r[i+4] */
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);   /* lanes 1,3 */
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; ++i) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);        /* column i      (lane 0) */
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);    /* column 8+i    (lane 2) */
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88); /* column 4+i  (lane 1) */
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd); /* column 12+i (lane 3) */
    }
}

GG_INLINE void kq_panel_pack(const int type, const int bbytes, const uint8_t *W, size_t ws, int64_t r0, int nrows,
                             int64_t nsb, uint8_t *panel) {
    const int nsub = kq_nsub(type), npair = kq_npair(type), sublen4 = 64 / nsub;
    const size_t SB = kq_panel_sb(type);
    uint8_t tmp[16][256] __attribute__((aligned(64)));
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t sb = 0; sb < nsb; ++sb) {
        uint8_t *pb = panel + sb * SB;
        int32_t *corr = (int32_t *)(pb + 4096), *scv = corr + 16 * nsub, *mnv = scv + 16 * nsub;
        float *dv = (float *)(mnv + 16 * npair), *dmv = dv + 16;
        for (int i = 0; i < 16; ++i) {
            const uint8_t *b = W + (r0 + (i < nrows ? i : nrows - 1)) * ws + sb * bbytes;
            kblk_t k;
            kq_unpack512(type, b, &k);
            for (int j = 0; j < 4; ++j) {
                __m512i q = k.Q[j];
                if (type == GG_Q6_K) q = _mm512_sub_epi8(q, _mm512_set1_epi8(32));
                if (type == GG_Q3_K) q = _mm512_sub_epi8(q, _mm512_set1_epi8(4));
                _mm512_storeu_si512(tmp[i] + 64 * j, q);
            }
            dv[i] = k.d;
            dmv[i] = -k.dmin;
            uint8_t su[16], mu[16];
            int8_t ss[16];
            if (type == GG_Q4_K || type == GG_Q5_K) {
                _mm_storeu_si128((__m128i *)su, q4k_scales_sse(b + 4));
                for (int j = 0; j < 8; ++j) scv[16 * j + i] = su[j];
                for (int p = 0; p < 4; ++p) mnv[16 * p + i] = (int32_t)su[8 + 2 * p] | ((int32_t)su[9 + 2 * p] << 16);
            } else if (type == GG_Q6_K) {
                for (int j = 0; j < 16; ++j) scv[16 * j + i] = (int8_t)b[192 + j];
            } else if (type == GG_Q3_K) {
                q3k_scales(b + 96, ss);
                for (int j = 0; j < 16; ++j) scv[16 * j + i] = ss[j];
            } else { /* Q2_K */
                for (int j = 0; j < 16; ++j) { su[j] = b[j] & 0xf; mu[j] = b[j] >> 4; }
                for (int j = 0; j < 16; ++j) scv[16 * j + i] = su[j];
                for (int p = 0; p < 8; ++p) mnv[16 * p + i] = (int32_t)mu[2 * p] | ((int32_t)mu[2 * p + 1] << 16);
            }
        }
        for (int j = 0; j < 4; ++j) {
            __m512i r[16];
            for (int i = 0; i < 16; ++i) r[i] = _mm512_load_si512(tmp[i] + 64 * j);
            transpose16x16(r);
            for (int c = 0; c < 16; ++c) _mm512_storeu_si512(pb + 64 * (16 * j + c), r[c]);
        }
        for (int j = 0; j < nsub; ++j) {
            __m512i s = _mm512_setzero_si512();
            for (int k = 0; k < sublen4; ++k) s = _mm512_dpbusd_epi32(s, ones, _mm512_loadu_si512(pb + 64 * (j * sublen4 + k)));
            _mm512_storeu_si512(corr + 16 * j, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, 7)));
        }
    }
}

GG_INLINE void kq_panel_tile(const int type, const int T, const uint8_t *panel, int64_t nsb, const uint8_t *X,
                             size_t xs, int64_t m, float *Y, int64_t ldy, int64_t r0, __mmask16 smask) {
    const int nsub = kq_nsub(type), npair = kq_npair(type), sublen4 = 64 / nsub;
    const size_t SB = kq_panel_sb(type);
    __m512 facc[6];
    for (int t = 0; t < T; ++t) facc[t] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; ++sb) {
        const uint8_t *pb = panel + sb * SB;
        const int32_t *corr = (const int32_t *)(pb + 4096), *scv = corr + 16 * nsub, *mnv = scv + 16 * nsub;
        const float *dv = (const float *)(mnv + 16 * npair), *dmv = dv + 16;
        __m512i sumi[6];
        for (int t = 0; t < T; ++t) sumi[t] = _mm512_setzero_si512();
        for (int j = 0; j < nsub; ++j) {
            __m512i Wv[8];
            for (int k = 0; k < sublen4; ++k) Wv[k] = _mm512_loadu_si512(pb + 64 * (j * sublen4 + k));
            const __m512i c = _mm512_loadu_si512(corr + 16 * j), sc = _mm512_loadu_si512(scv + 16 * j);
            for (int t = 0; t < T; ++t) {
                const uint8_t *xu = X + (m + t) * xs + sb * Q8K_SB_BYTES + Q8K_O_QSU + 4 * sublen4 * j;
                __m512i a = c;
                for (int k = 0; k < sublen4; ++k) {
                    int32_t v;
                    memcpy(&v, xu + 4 * k, 4);
                    a = _mm512_dpbusd_epi32(a, _mm512_set1_epi32(v), Wv[k]);
                }
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(a, sc));
            }
        }
        const __m512 d = _mm512_loadu_ps(dv);
        for (int t = 0; t < T; ++t) {
            const uint8_t *xb = X + (m + t) * xs + sb * Q8K_SB_BYTES;
            float xd;
            memcpy(&xd, xb, 4);
            facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[t]), _mm512_mul_ps(d, _mm512_set1_ps(xd)), facc[t]);
            if (npair) {
                const uint8_t *bsp = xb + (type == GG_Q2_K ? Q8K_O_BSUMS : Q8K_O_BSUM32);
                __m512i sm = _mm512_setzero_si512();
                for (int p = 0; p < npair; ++p) {
                    int32_t v;
                    memcpy(&v, bsp + 4 * p, 4);
                    sm = _mm512_dpwssd_epi32(sm, _mm512_loadu_si512(mnv + 16 * p), _mm512_set1_epi32(v));
                }
                facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sm), _mm512_mul_ps(_mm512_loadu_ps(dmv), _mm512_set1_ps(xd)), facc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(Y + (m + t) * ldy + r0, smask, facc[t]);
}

GG_INLINE int kq_panel_kernel(const int type, const int bbytes, const uint8_t *W, size_t ws, int64_t r0, int64_t r1,
                              int64_t K, const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    const int64_t nsb = K / 256;
    uint8_t *panel = get_panel((size_t)nsb * kq_panel_sb(type));
    if (!panel) return -1;
    for (int64_t r = r0; r < r1; r += 16) {
        const int nrows = (int)(r1 - r < 16 ? r1 - r : 16);
        const __mmask16 smask = (__mmask16)((1u << nrows) - 1);
        kq_panel_pack(type, bbytes, W, ws, r, nrows, nsb, panel);
        int64_t m = 0;
        for (; m + 6 <= M; m += 6) kq_panel_tile(type, 6, panel, nsb, X, xs, m, Y, ldy, r, smask);
        if (M - m >= 4) { kq_panel_tile(type, 4, panel, nsb, X, xs, m, Y, ldy, r, smask); m += 4; }
        if (M - m >= 2) { kq_panel_tile(type, 2, panel, nsb, X, xs, m, Y, ldy, r, smask); m += 2; }
        if (M - m >= 1) { kq_panel_tile(type, 1, panel, nsb, X, xs, m, Y, ldy, r, smask); m += 1; }
    }
    return 0;
}

#define DEF_KQ_512(NAME, TYPE, BB)                                                                       \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        if (M >= GG_PANEL_M) {                                                                           \
            if (kq_panel_kernel(TYPE, BB, W, ws, r0, r1, K, X, xs, M, Y, ldy) != 0) g_kernel_err = -5;     \
            return;                                                                                       \
        }                                                                                                 \
        kq_kernel512(TYPE, BB, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                       \
    }
DEF_KQ_512(k_q2_k_avx512, GG_Q2_K, 84)
DEF_KQ_512(k_q3_k_avx512, GG_Q3_K, 110)
DEF_KQ_512(k_q4_k_avx512, GG_Q4_K, 144)
DEF_KQ_512(k_q5_k_avx512, GG_Q5_K, 176)
DEF_KQ_512(k_q6_k_avx512, GG_Q6_K, 210)

/* ---- F32 / F16 / BF16 */
GG_INLINE __m512 f_load512(const int type, const uint8_t *w, int64_t k, int64_t K) {
    const int64_t n = K - k;
    const __mmask16 mk = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    if (type == GG_F32) return _mm512_maskz_loadu_ps(mk, (const float *)w + k);
    const __m256i h = _mm256_maskz_loadu_epi16(mk, w + 2 * k);
    if (type == GG_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

GG_INLINE void f_tile512(const int type, const int R, const int T, const uint8_t *W, size_t ws, int64_t r, int64_t K,
                         const uint8_t *X, size_t xs, int64_t m, float *Y, int64_t ldy) {
    __m512 acc[4][4];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = _mm512_setzero_ps();
    const int esz = type == GG_F32 ? 4 : 2;
    for (int64_t k = 0; k < K; k += 16) {
        __m512 w[4];
        for (int i = 0; i < R; ++i) {
            _mm_prefetch((const char *)(W + (r + i) * ws + esz * k) + GG_PF, _MM_HINT_T0);
            w[i] = f_load512(type, W + (r + i) * ws, k, K);
        }
        for (int t = 0; t < T; ++t) {
            const __m512 xv = _mm512_loadu_ps((const float *)(X + (m + t) * xs) + k);
            for (int i = 0; i < R; ++i) acc[i][t] = _mm512_fmadd_ps(w[i], xv, acc[i][t]);
        }
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) Y[(m + t) * ldy + r + i] = _mm512_reduce_add_ps(acc[i][t]);
}

GG_INLINE void f_kernel512(const int type, const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                           const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy) {
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) f_tile512(type, 4, 4, W, ws, r, K, X, xs, m, Y, ldy);
        for (; r < r1; ++r) f_tile512(type, 1, 4, W, ws, r, K, X, xs, m, Y, ldy);
    }
    for (; m < M; ++m) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) f_tile512(type, 4, 1, W, ws, r, K, X, xs, m, Y, ldy);
        for (; r < r1; ++r) f_tile512(type, 1, 1, W, ws, r, K, X, xs, m, Y, ldy);
    }
}

#define DEF_F_512(NAME, TYPE)                                                                            \
    static void NAME(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K, const uint8_t *X,  \
                     size_t xs, int64_t M, float *Y, int64_t ldy) {                                      \
        f_kernel512(TYPE, W, ws, r0, r1, K, X, xs, M, Y, ldy);                                            \
    }
DEF_F_512(k_f32_avx512, GG_F32)
DEF_F_512(k_f16_avx512, GG_F16)
DEF_F_512(k_bf16_avx512, GG_BF16)

#endif /* GG_AVX512 */

/* ------------------------------------------------------------------------------------------ */
/* kernel table                                                                                */
/* ------------------------------------------------------------------------------------------ */

#define NTYPES 31
static ktype_t g_kt[NTYPES];
static int g_kt_ready = 0;

static void set_kt(int type, int blck, int bbytes, int afmt, int with_s, int corr, gemm_fn fn, const char *impl) {
    ktype_t *k = &g_kt[type];
    k->type = type; k->blck = blck; k->bbytes = bbytes; k->afmt = afmt; k->with_s = with_s;
    k->corr = corr; k->fn = fn; k->impl = impl;
}

static void init_kt(void) {
    memset(g_kt, 0, sizeof(g_kt));
    /* portable defaults (corr unused by the scalar kernels) */
    set_kt(GG_F32, 1, 4, AF_F32, 0, 0, k_f32_sc, "scalar");
    set_kt(GG_F16, 1, 2, AF_F16, 0, 0, k_f16_sc, "scalar");
    set_kt(GG_BF16, 1, 2, AF_BF16, 0, 0, k_bf16_sc, "scalar");
    set_kt(GG_Q4_0, 32, 18, AF_A32, 0, 0, k_q4_0_sc, "scalar");
    set_kt(GG_Q4_1, 32, 20, AF_A32, 1, 0, k_q4_1_sc, "scalar");
    set_kt(GG_Q5_0, 32, 22, AF_A32, 0, 0, k_q5_0_sc, "scalar");
    set_kt(GG_Q5_1, 32, 24, AF_A32, 1, 0, k_q5_1_sc, "scalar");
    set_kt(GG_Q8_0, 32, 34, AF_A32, 0, 0, k_q8_0_sc, "scalar");
    set_kt(GG_Q2_K, 256, 84, AF_Q8K, 0, 0, k_q2_k_sc, "scalar");
    set_kt(GG_Q3_K, 256, 110, AF_Q8K, 0, 0, k_q3_k_sc, "scalar");
    set_kt(GG_Q4_K, 256, 144, AF_Q8K, 0, 0, k_q4_k_sc, "scalar");
    set_kt(GG_Q5_K, 256, 176, AF_Q8K, 0, 0, k_q5_k_sc, "scalar");
    set_kt(GG_Q6_K, 256, 210, AF_Q8K, 0, 0, k_q6_k_sc, "scalar");
#if GG_AVX2
    set_kt(GG_F32, 1, 4, AF_F32, 0, 0, k_f32_avx2, "avx2");
    set_kt(GG_F16, 1, 2, AF_F16, 0, 0, k_f16_avx2, "avx2");
    set_kt(GG_BF16, 1, 2, AF_BF16, 0, 0, k_bf16_avx2, "avx2");
    set_kt(GG_Q4_0, 32, 18, AF_A32, 0, 8, k_q4_0_avx2x, "avx2");
    set_kt(GG_Q4_1, 32, 20, AF_A32, 1, 0, k_q4_1_avx2x, "avx2");
    set_kt(GG_Q5_0, 32, 22, AF_A32, 0, 16, k_q5_0_avx2x, "avx2");
    set_kt(GG_Q5_1, 32, 24, AF_A32, 1, 0, k_q5_1_avx2x, "avx2");
    set_kt(GG_Q8_0, 32, 34, AF_A32, 0, 0, k_q8_0_avx2x, "avx2");
    set_kt(GG_Q2_K, 256, 84, AF_Q8K, 0, 0, k_q2_k_avx2, "avx2");
    set_kt(GG_Q3_K, 256, 110, AF_Q8K, 0, 0, k_q3_k_avx2, "avx2");
    set_kt(GG_Q4_K, 256, 144, AF_Q8K, 0, 0, k_q4_k_avx2, "avx2");
    set_kt(GG_Q5_K, 256, 176, AF_Q8K, 0, 0, k_q5_k_avx2, "avx2");
    set_kt(GG_Q6_K, 256, 210, AF_Q8K, 0, 0, k_q6_k_avx2, "avx2");
#endif
#if GG_AVX512
    init_avx512_tables();
    init_g20_tables();
    init_ex41_tables();
    set_kt(GG_F32, 1, 4, AF_F32, 0, 0, k_f32_avx512, "avx512");
    set_kt(GG_F16, 1, 2, AF_F16, 0, 0, k_f16_avx512, "avx512");
    set_kt(GG_BF16, 1, 2, AF_BF16, 0, 0, k_bf16_avx512, "avx512");
    init_panel_tables();
    set_kt(GG_Q4_0, 32, 18, AF_A32, 0, 8, k_q4_0_avx512p, "avx512-vnni");
    set_kt(GG_Q4_1, 32, 20, AF_A32, 1, 0, k_q4_1_avx512p, "avx512-vnni");
    g_kt[GG_Q4_1].g20 = 1;
    set_kt(GG_Q5_0, 32, 22, AF_A32, 0, 16, k_q5_0_avx512p, "avx512-vnni");
    set_kt(GG_Q5_1, 32, 24, AF_A32, 1, 0, k_q5_1_avx512p, "avx512-vnni");
    set_kt(GG_Q8_0, 32, 34, AF_A32, 0, 128, k_q8_0_avx512p, "avx512-vnni");
    for (int t = 0; t < NTYPES; ++t) if ((g_kt[t].afmt == AF_A32 || g_kt[t].afmt == AF_Q8K) && g_kt[t].fn) g_kt[t].panel = 1;
    set_kt(GG_Q2_K, 256, 84, AF_Q8K, 0, 0, k_q2_k_avx512, "avx512-vnni");
    set_kt(GG_Q3_K, 256, 110, AF_Q8K, 0, 0, k_q3_k_avx512, "avx512-vnni");
    set_kt(GG_Q4_K, 256, 144, AF_Q8K, 0, 0, k_q4_k_avx512, "avx512-vnni");
    set_kt(GG_Q5_K, 256, 176, AF_Q8K, 0, 0, k_q5_k_avx512, "avx512-vnni");
    set_kt(GG_Q6_K, 256, 210, AF_Q8K, 0, 0, k_q6_k_avx512, "avx512-vnni");
#endif
    g_kt_ready = 1;
}

static const ktype_t *get_kt(int type) {
    if (type < 0 || type >= NTYPES || !g_kt[type].fn) return NULL;
    return &g_kt[type];
}

/* ------------------------------------------------------------------------------------------ */
/* thread pool                                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define GG_MAXT 64
typedef void (*chunk_fn)(void *ctx, int64_t chunk, int ith);

static struct {
    pthread_mutex_t call_mu;        /* one API call at a time */
    pthread_mutex_t init_mu;
    int nworkers;                   /* threads started besides callers */
    pthread_t th[GG_MAXT];
    _Atomic uint32_t wake;          /* futex word: bumped for every job */
    _Atomic uint64_t claim;         /* (gen << 32) | next chunk */
    _Atomic int64_t done;           /* chunks finished in the current job */
    _Atomic int sleepers;
    _Atomic int stop;
    chunk_fn fn;
    void *ctx;
    _Atomic int64_t nchunks;
    _Atomic int nth;
    uint32_t gen;
    _Atomic int64_t spin_ns;
} P = {.call_mu = PTHREAD_MUTEX_INITIALIZER, .init_mu = PTHREAD_MUTEX_INITIALIZER};

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
#else
    (void)addr; (void)val;
    usleep(50);
#endif
}

static void futex_wake_all(_Atomic uint32_t *addr) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

static void run_chunks(int ith, uint32_t gen) {
    for (;;) {
        uint64_t c = atomic_load_explicit(&P.claim, memory_order_acquire);
        int64_t k;
        for (;;) {
            if ((uint32_t)(c >> 32) != gen) return;
            k = (int64_t)(uint32_t)c;
            if (k >= atomic_load_explicit(&P.nchunks, memory_order_relaxed)) return;
            if (atomic_compare_exchange_weak_explicit(&P.claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire)) break;
        }
        P.fn(P.ctx, k, ith);
        atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    const int ith = (int)(intptr_t)arg;
    uint32_t seen = atomic_load(&P.wake);
    for (;;) {
        uint32_t w;
        int64_t t0 = now_ns();
        unsigned it = 0;
        while ((w = atomic_load_explicit(&P.wake, memory_order_acquire)) == seen) {
            cpu_relax();
            if ((++it & 63u) == 0) {
                const int64_t dt = now_ns() - t0;
                if (dt > atomic_load_explicit(&P.spin_ns, memory_order_relaxed)) {
                    atomic_fetch_add(&P.sleepers, 1);
                    futex_wait(&P.wake, seen);
                    atomic_fetch_sub(&P.sleepers, 1);
                    t0 = now_ns();
                } else if (dt > 30000) {
                    sched_yield(); /* let a thread that shares this core run */
                }
            }
        }
        seen = w;
        if (atomic_load(&P.stop)) return NULL;
        if (ith < atomic_load_explicit(&P.nth, memory_order_relaxed)) {
            const uint64_t c = atomic_load_explicit(&P.claim, memory_order_acquire);
            run_chunks(ith, (uint32_t)(c >> 32));
        }
    }
}

static void pool_atfork_child(void) {
    /* the workers do not exist in a forked child: start afresh */
    P.nworkers = 0;
    pthread_mutex_init(&P.call_mu, NULL);
    pthread_mutex_init(&P.init_mu, NULL);
}

static int pool_ensure(int nth) {
    if (nth > GG_MAXT) nth = GG_MAXT;
    if (nth - 1 <= P.nworkers) return nth;
    pthread_mutex_lock(&P.init_mu);
    static int atfork_done = 0;
    if (!atfork_done) { pthread_atfork(NULL, NULL, pool_atfork_child); atfork_done = 1; }
    while (P.nworkers < nth - 1) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setstacksize(&at, 1 << 20);
        const int idx = P.nworkers + 1;
        if (pthread_create(&P.th[idx], &at, worker_main, (void *)(intptr_t)idx) != 0) {
            pthread_attr_destroy(&at);
            break;
        }
        pthread_attr_destroy(&at);
        P.nworkers++;
    }
    pthread_mutex_unlock(&P.init_mu);
    return nth < P.nworkers + 1 ? nth : P.nworkers + 1;
}

static void pool_run(chunk_fn fn, void *ctx, int64_t nchunks, int nth) {
    if (nchunks <= 0) return;
    if (nth > nchunks) nth = (int)nchunks;
    if (nth > 1) nth = pool_ensure(nth);
    if (nth <= 1) {
        for (int64_t k = 0; k < nchunks; ++k) fn(ctx, k, 0);
        return;
    }
    P.fn = fn;
    P.ctx = ctx;
    atomic_store_explicit(&P.nchunks, nchunks, memory_order_relaxed);
    atomic_store_explicit(&P.nth, nth, memory_order_relaxed);
    atomic_store_explicit(&P.done, 0, memory_order_relaxed);
    const uint32_t gen = ++P.gen;
    atomic_store_explicit(&P.claim, (uint64_t)gen << 32, memory_order_release);
    atomic_fetch_add_explicit(&P.wake, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&P.sleepers, memory_order_seq_cst) > 0) futex_wake_all(&P.wake);
    run_chunks(0, gen);
    unsigned it = 0;
    int64_t t0 = 0;
    while (atomic_load_explicit(&P.done, memory_order_acquire) < nchunks) {
        cpu_relax();
        if ((++it & 255u) == 0) {
            /* a worker holding a chunk may be descheduled, possibly in favour of this thread */
            const int64_t t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > 30000) sched_yield();
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* matmul driver                                                                               */
/* ------------------------------------------------------------------------------------------ */

#define GG_MAXSEG 64

typedef struct {
    const uint8_t *w;
    size_t ws;
    int64_t N;
    int64_t coloff;
    const ktype_t *kt;
    int key;
} seg_t;

typedef struct {
    int afmt, with_s, corr, g20;
    size_t stride;
} xkey_t;

typedef struct { int32_t seg; int64_t r0, r1; } chunk_t;

typedef struct {
    int nseg, nkey;
    seg_t *seg;
    xkey_t key[GG_MAXSEG];
    int64_t K, Ntot;
    double total_bytes;
    int nth;               /* default thread count for this plan (0: global default) */
    /* chunk table cache (valid for cache_M, cache_nth) */
    chunk_t *chunks;
    int64_t nchunk, cap_chunk, cache_M;
    int cache_nth, cache_exact;
} plan_t;

#ifdef GG_PANEL_M
#define GG_PANEL_M_ACT GG_PANEL_M
#else
#define GG_PANEL_M_ACT 1000000000
#endif

/* state of the call in progress (calls are serialized by P.call_mu) */
static struct {
    const plan_t *plan;
    uint8_t *xbuf[GG_MAXSEG];
    const float *x;
    int64_t ldx, M, ldy;
    float *y;
    int64_t qrows;
    uint8_t *scratch;
    size_t scratch_size;
} C;

static void quant_rows(int64_t m0, int64_t m1) {
    const plan_t *pl = C.plan;
    for (int kk = 0; kk < pl->nkey; ++kk) {
        const xkey_t *k = &pl->key[kk];
        for (int64_t m = m0; m < m1; ++m) {
            const float *xr = C.x + m * C.ldx;
            uint8_t *o = C.xbuf[kk] + m * k->stride;
            if (k->afmt == AF_A32) quant_a32_row(xr, pl->K, o, k->corr, !g_exact && C.M >= GG_PANEL_M_ACT,
                                               !g_exact && k->g20 && C.M < GG_PANEL_M_ACT,
                                               g_exact || C.M < GG_PANEL_M_ACT);
            else if (k->afmt == AF_Q8K) quant_q8k_row(xr, pl->K, o, C.M >= GG_PANEL_M_ACT);
            else quant_f_row(xr, pl->K, (float *)o, k->afmt);
        }
    }
}

static void quant_chunk(void *ctx, int64_t c, int ith) {
    (void)ctx; (void)ith;
    const int64_t m0 = c * C.qrows, m1 = m0 + C.qrows < C.M ? m0 + C.qrows : C.M;
    quant_rows(m0, m1);
}

static void mm_chunk(void *ctx, int64_t c, int ith) {
    (void)ith;
    const chunk_t *ch = &((const chunk_t *)ctx)[c];
    const seg_t *s = &C.plan->seg[ch->seg];
    s->kt->fn(s->w, s->ws, ch->r0, ch->r1, C.plan->K, C.xbuf[s->key], C.plan->key[s->key].stride, C.M,
              C.y + s->coloff, C.ldy);
}

static int ensure_scratch(size_t need) {
    if (need <= C.scratch_size) return 0;
    size_t sz = need + need / 4 + 4096;
    void *p = NULL;
    if (posix_memalign(&p, 64, sz) != 0) return -1;
    free(C.scratch);
    C.scratch = p;
    C.scratch_size = sz;
    return 0;
}

static int g_default_nth = 0;

static int resolve_nth(int nth) {
    if (nth <= 0) {
        if (g_default_nth <= 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            g_default_nth = n > 0 ? (int)(n < GG_MAXT ? n : GG_MAXT) : 1;
        }
        nth = g_default_nth;
    }
    return nth > GG_MAXT ? GG_MAXT : nth;
}

static void ensure_init(void) {
    if (!g_kt_ready) {
        pthread_mutex_lock(&P.init_mu);
        if (!g_kt_ready) {
            init_kt();
            if (atomic_load(&P.spin_ns) == 0) atomic_store(&P.spin_ns, 500000);
        }
        pthread_mutex_unlock(&P.init_mu);
    }
}

/* errors: -1 bad argument, -2 unsupported type, -3 K not a multiple of the block, -4 row stride too small,
 *         -5 out of memory, -6 too many segments, -7 unknown plan */
static int plan_init(plan_t *pl, int nseg, const int64_t *wptrs, const int32_t *types, const int64_t *Ns,
                     const int64_t *wstrides, const int64_t *coloffs, int64_t K, seg_t *segbuf) {
    ensure_init();
    if (nseg <= 0 || K <= 0) return -1;
    if (nseg > GG_MAXSEG) return -6;
    memset(pl, 0, sizeof(*pl));
    pl->seg = segbuf;
    pl->nseg = nseg;
    pl->K = K;
    pl->cache_M = -1;
    for (int i = 0; i < nseg; ++i) {
        const ktype_t *kt = get_kt(types[i]);
        if (!kt) return -2;
        if (K % kt->blck) return -3;
        const int64_t rb = K / kt->blck * kt->bbytes;
        if (wstrides[i] < rb || Ns[i] < 0) return Ns[i] < 0 ? -1 : -4;
        seg_t *s = &pl->seg[i];
        s->w = (const uint8_t *)(intptr_t)wptrs[i];
        s->ws = (size_t)wstrides[i];
        s->N = Ns[i];
        s->kt = kt;
        s->coloff = coloffs[i];
        if (s->coloff + s->N > pl->Ntot) pl->Ntot = s->coloff + s->N;
        int key = -1;
        for (int kk = 0; kk < pl->nkey; ++kk) {
            const xkey_t *k = &pl->key[kk];
            if (k->afmt == kt->afmt && k->with_s == kt->with_s && k->corr == kt->corr && k->g20 == kt->g20) key = kk;
        }
        if (key < 0) {
            key = pl->nkey++;
            xkey_t *k = &pl->key[key];
            k->afmt = kt->afmt; k->with_s = kt->with_s; k->corr = kt->corr; k->g20 = kt->g20;
            k->stride = kt->afmt == AF_A32 ? a32_lay(K).stride : kt->afmt == AF_Q8K ? q8k_stride(K) : af_stride(K);
        }
        s->key = key;
        pl->total_bytes += (double)rb * (double)s->N;
    }
    return 0;
}

/* cut the rows of all segments into chunks that the threads claim dynamically */
static int plan_chunks(plan_t *pl, int64_t M, int nth) {
    if (pl->chunks && pl->cache_M == M && pl->cache_nth == nth && pl->cache_exact == g_exact) return 0;
    double target;
    if (nth <= 1) target = M == 1 ? 1e18 : 32768.0;
    else if (M == 1) {
        target = pl->total_bytes / (nth * 8.0);
        if (target < 16384.0) target = 16384.0;
        if (target > 262144.0) target = 262144.0;
    } else {
        target = pl->total_bytes / (nth * 8.0);
        if (target < 2048.0) target = 2048.0;
        if (target > 32768.0) target = 32768.0;
    }
    for (;;) {
        int64_t n = 0;
        for (int i = 0; i < pl->nseg; ++i) {
            const seg_t *s = &pl->seg[i];
            const double rb = (double)(pl->K / s->kt->blck * s->kt->bbytes);
            int64_t rows = (int64_t)(target / rb);
            const int64_t al = (s->kt->afmt == AF_A32 && g_exact) ? (M == 1 ? 16 : 8) : (s->kt->panel && M >= GG_PANEL_M_ACT) ? 16 : 4;
            rows -= rows % al;
            if (rows < al) rows = al;
            n += (s->N + rows - 1) / rows;
        }
        if (n > 65536) { target *= 2; continue; }
        if (n > pl->cap_chunk) {
            chunk_t *c = realloc(pl->chunks, (size_t)n * sizeof(chunk_t));
            if (!c) return -5;
            pl->chunks = c;
            pl->cap_chunk = n;
        }
        n = 0;
        for (int i = 0; i < pl->nseg; ++i) {
            const seg_t *s = &pl->seg[i];
            const double rb = (double)(pl->K / s->kt->blck * s->kt->bbytes);
            int64_t rows = (int64_t)(target / rb);
            const int64_t al = (s->kt->afmt == AF_A32 && g_exact) ? (M == 1 ? 16 : 8) : (s->kt->panel && M >= GG_PANEL_M_ACT) ? 16 : 4;
            rows -= rows % al;
            if (rows < al) rows = al;
            for (int64_t r = 0; r < s->N; r += rows) {
                chunk_t *c = &pl->chunks[n++];
                c->seg = i;
                c->r0 = r;
                c->r1 = r + rows < s->N ? r + rows : s->N;
            }
        }
        pl->nchunk = n;
        pl->cache_M = M;
        pl->cache_nth = nth;
        pl->cache_exact = g_exact;
        return 0;
    }
}

static int plan_run(plan_t *pl, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy, int nth) {
    if (M < 0 || ldx < pl->K || ldy < pl->Ntot) return -1;
    if (M == 0) return 0;
    nth = resolve_nth(nth > 0 ? nth : pl->nth);
    pthread_mutex_lock(&P.call_mu);
    int rc = 0;
    size_t need = 0;
    for (int kk = 0; kk < pl->nkey; ++kk) need += GG_ALIGN64(pl->key[kk].stride * (size_t)M);
    if (ensure_scratch(need)) { rc = -5; goto out; }
    {
        size_t off = 0;
        for (int kk = 0; kk < pl->nkey; ++kk) {
            C.xbuf[kk] = C.scratch + off;
            off += GG_ALIGN64(pl->key[kk].stride * (size_t)M);
        }
    }
    C.plan = pl;
    C.x = x; C.ldx = ldx; C.M = M; C.y = y; C.ldy = ldy;
    /* 1. the activations, in the vec_dot formats of the weights */
    if (nth > 1 && M >= 4 && M * pl->K >= 16384) {
        int64_t nq = nth * 4;
        if (nq > M) nq = M;
        C.qrows = (M + nq - 1) / nq;
        pool_run(quant_chunk, NULL, (M + C.qrows - 1) / C.qrows, nth);
    } else {
        quant_rows(0, M);
    }
    /* 2. the row chunks */
    if ((rc = plan_chunks(pl, M, nth)) != 0) goto out;
    g_kernel_err = 0;
    pool_run(mm_chunk, pl->chunks, pl->nchunk, nth);
    rc = g_kernel_err;
out:
    C.plan = NULL;
    pthread_mutex_unlock(&P.call_mu);
    return rc;
}

GG_API int gg_matmul_multi(int nseg, const int64_t *wptrs, const int32_t *types, const int64_t *Ns,
                           const int64_t *wstrides, const int64_t *coloffs, int64_t K, const float *x,
                           int64_t M, int64_t ldx, float *y, int64_t ldy, int nth) {
    plan_t pl;
    seg_t segs[GG_MAXSEG];
    int rc = plan_init(&pl, nseg, wptrs, types, Ns, wstrides, coloffs, K, segs);
    if (rc == 0) rc = plan_run(&pl, x, M, ldx, y, ldy, nth);
    free(pl.chunks);
    return rc;
}

GG_API int gg_matmul(const uint8_t *w, int type, int64_t N, int64_t K, int64_t ws, const float *x, int64_t M,
                     int64_t ldx, float *y, int64_t ldy, int nth) {
    const int64_t wp = (int64_t)(intptr_t)w, co = 0;
    const int32_t t = type;
    return gg_matmul_multi(1, &wp, &t, &N, &ws, &co, K, x, M, ldx, y, ldy, nth);
}

/* ---- persistent plans: the weights of a call registered once; a call is then 4 arguments */
static plan_t **g_plans = NULL;
static int64_t g_nplans = 0, g_cap_plans = 0;
static pthread_mutex_t g_plans_mu = PTHREAD_MUTEX_INITIALIZER;

/* returns a plan id > 0, or an error < 0 */
GG_API int64_t gg_plan_create(int nseg, const int64_t *wptrs, const int32_t *types, const int64_t *Ns,
                              const int64_t *wstrides, const int64_t *coloffs, int64_t K, int nth) {
    if (nseg <= 0 || nseg > GG_MAXSEG) return nseg <= 0 ? -1 : -6;
    plan_t *pl = calloc(1, sizeof(plan_t));
    seg_t *segs = calloc((size_t)nseg, sizeof(seg_t));
    if (!pl || !segs) { free(pl); free(segs); return -5; }
    int rc = plan_init(pl, nseg, wptrs, types, Ns, wstrides, coloffs, K, segs);
    if (rc) { free(segs); free(pl); return rc; }
    pl->nth = nth;
    pthread_mutex_lock(&g_plans_mu);
    int64_t id = -1;
    for (int64_t i = 0; i < g_nplans; ++i)
        if (!g_plans[i]) { id = i; break; }
    if (id < 0) {
        if (g_nplans == g_cap_plans) {
            int64_t cap = g_cap_plans ? 2 * g_cap_plans : 256;
            plan_t **np = realloc(g_plans, (size_t)cap * sizeof(plan_t *));
            if (!np) { pthread_mutex_unlock(&g_plans_mu); free(segs); free(pl); return -5; }
            g_plans = np;
            g_cap_plans = cap;
        }
        id = g_nplans++;
    }
    g_plans[id] = pl;
    pthread_mutex_unlock(&g_plans_mu);
    return id + 1;
}

GG_API int gg_plan_free(int64_t id) {
    pthread_mutex_lock(&g_plans_mu);
    if (id < 1 || id > g_nplans || !g_plans[id - 1]) { pthread_mutex_unlock(&g_plans_mu); return -7; }
    plan_t *pl = g_plans[id - 1];
    g_plans[id - 1] = NULL;
    pthread_mutex_unlock(&g_plans_mu);
    pthread_mutex_lock(&P.call_mu); /* not in use by a call */
    pthread_mutex_unlock(&P.call_mu);
    free(pl->chunks);
    free(pl->seg);
    free(pl);
    return 0;
}

static inline plan_t *plan_get(int64_t id) {
    /* plans are only freed by their owner (the Python object), never while it runs them */
    pthread_mutex_lock(&g_plans_mu);
    plan_t *pl = (id >= 1 && id <= g_nplans) ? g_plans[id - 1] : NULL;
    pthread_mutex_unlock(&g_plans_mu);
    return pl;
}

/* x: (M, K) contiguous rows, y: (M, Ntot) contiguous rows, the plan's thread count */
GG_API int gg_plan_run(int64_t id, const float *x, float *y, int64_t M) {
    plan_t *pl = plan_get(id);
    if (!pl) return -7;
    return plan_run(pl, x, M, pl->K, y, pl->Ntot, 0);
}

GG_API int gg_plan_run_ex(int64_t id, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy, int nth) {
    plan_t *pl = plan_get(id);
    if (!pl) return -7;
    return plan_run(pl, x, M, ldx, y, ldy, nth);
}

GG_API void gg_set_exact(int on) {
    pthread_mutex_lock(&P.call_mu);
    g_exact = on ? 1 : 0;
    pthread_mutex_unlock(&P.call_mu);
}

GG_API int gg_get_exact(void) { return g_exact; }

GG_API void gg_set_default_threads(int n) { g_default_nth = n > GG_MAXT ? GG_MAXT : n; }

/* ------------------------------------------------------------------------------------------ */
/* misc exports                                                                                */
/* ------------------------------------------------------------------------------------------ */

GG_API const char *gg_version(void) { return GG_VERSION; }

GG_API const char *gg_isa(void) {
#if GG_AVX512
    return "avx512";
#elif GG_AVX2
    return "avx2";
#else
    return "scalar";
#endif
}

GG_API int gg_max_threads(void) { return GG_MAXT; }

GG_API void gg_set_spin_us(int64_t us) {
    if (us < 0) us = 0;
    atomic_store(&P.spin_ns, us * 1000 + 1);
}

GG_API int gg_kernel_info(int type, char *buf, int n) {
    ensure_init();
    const ktype_t *k = get_kt(type);
    if (!k) return -2;
    snprintf(buf, (size_t)n, "%s", k->impl);
    return 0;
}

/* Quantize one row the way the kernels do, in canonical form (for tests).
 * vec_type: 8 = Q8_0, 9 = Q8_1 (qs[K], d[K/32], s[K/32]); 15 = Q8_K (qs[K], d[K/256], bsums[K/16]);
 *           1 = F16, 30 = BF16 (d[K] = rounded values). */
GG_API int gg_quantize_row(int vec_type, const float *x, int64_t K, int8_t *qs, float *d, float *s,
                           int16_t *bsums) {
    ensure_init();
    if (vec_type == 8 || vec_type == 9) {
        if (K % 32) return -3;
        const a32_lay_t L = a32_lay(K);
        uint8_t *buf = NULL;
        if (posix_memalign((void **)&buf, 64, L.stride)) return -5;
        quant_a32_row(x, K, buf, 0, 0, 0, 1);
        memcpy(qs, buf, (size_t)K);
        memcpy(d, buf + L.o_d, (size_t)L.nb * 4);
        if (s) memcpy(s, buf + L.o_s, (size_t)L.nb * 4);
        free(buf);
        return 0;
    }
    if (vec_type == 15) {
        if (K % 256) return -3;
        uint8_t *buf = NULL;
        if (posix_memalign((void **)&buf, 64, q8k_stride(K))) return -5;
        quant_q8k_row(x, K, buf, 0);
        for (int64_t i = 0; i < K / 256; ++i) {
            const uint8_t *o = buf + i * Q8K_SB_BYTES;
            memcpy(d + i, o + Q8K_O_D, 4);
            memcpy(qs + i * 256, o + Q8K_O_QS, 256);
            memcpy(bsums + i * 16, o + Q8K_O_BSUMS, 32);
        }
        free(buf);
        return 0;
    }
    if (vec_type == 1 || vec_type == 30 || vec_type == 0) {
        float *buf = NULL;
        if (posix_memalign((void **)&buf, 64, af_stride(K))) return -5;
        quant_f_row(x, K, buf, vec_type == 1 ? AF_F16 : vec_type == 30 ? AF_BF16 : AF_F32);
        memcpy(d, buf, (size_t)K * 4);
        free(buf);
        return 0;
    }
    return -2;
}

/* for measuring the cost of a ctypes call with 11 integer arguments */
GG_API int64_t gg_noop(int64_t a, int64_t b, int64_t c, int64_t d, int64_t e, int64_t f, int64_t g, int64_t h,
                       int64_t i, int64_t j, int64_t k) {
    return a + b + c + d + e + f + g + h + i + j + k;
}
