/*
 * ggrun CPU matmul kernels: shared definitions.
 *
 * Everything here is internal to kernels.c; the Python loader (ggrun/cpu/__init__.py) only
 * sees the GG_API functions declared at the bottom.
 */
#ifndef GGRUN_CPU_KERNELS_H
#define GGRUN_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define GG_API __attribute__((visibility("default")))
#define GG_INLINE static inline __attribute__((always_inline))

/* ggml type ids (ggml.h) */
enum {
    GG_F32 = 0, GG_F16 = 1, GG_Q4_0 = 2, GG_Q4_1 = 3, GG_Q5_0 = 6, GG_Q5_1 = 7, GG_Q8_0 = 8,
    GG_Q2_K = 10, GG_Q3_K = 11, GG_Q4_K = 12, GG_Q5_K = 13, GG_Q6_K = 14, GG_BF16 = 30,
};

/* activation ("vec_dot_type") formats */
enum { AF_A32 = 0, AF_Q8K = 1, AF_F16 = 2, AF_BF16 = 3, AF_F32 = 4, AF_COUNT = 5 };

/*
 * AF_A32: one x row quantized to Q8_0 / Q8_1 blocks of 32, in our own layout (row stride a32_lay().stride):
 *   qs   int8[nbp*32]   the quants, natural order, zero padded to an even number of blocks
 *   qsu  uint8[nbp*32]  qs ^ 0x80 (only filled when asked: panel GEMM kernels)
 *   d    float[nbp]     fp16-rounded block scale, as float
 *   s    float[nbp]     fp16-rounded d*sum(qs) (Q8_1 only)
 *   sum  int32[nbp]     sum(qs)
 *   dpat float[nbp*8]   d repeated 8x per block          (SIMD kernels: one block = 8 int32 lanes)
 *   cpat int32[nbp*8]   -c*sum in the block's first lane (c = the weight's zero-point trick constant)
 *   spat float[nbp*8]   s in the block's first lane
 * AF_Q8K: Q8_K superblocks of 256, stride 576 bytes each:
 *   [0] float d  [16] int16 bsums[16]  [48] int16 bsum32[8] (pairs of bsums)  [64] int8 qs[256]
 *   [320] uint8 qsu[256] = qs ^ 0x80 (panel kernels)
 * AF_F16/AF_BF16/AF_F32: float[Kp] = x rounded to f16 / bf16 / unchanged, Kp = K rounded up to 16, zero padded.
 */
typedef struct {
    int64_t nb, nbp;
    int64_t ng;   /* full groups of 16 blocks (Q4_1 group layout) */
    size_t o_qsu, o_d, o_s, o_sum, o_dpat, o_cpat, o_spat, o_g20, stride;
} a32_lay_t;

/* Q4_1 group layout (filled only when asked): per group of 16 blocks (320 weight bytes = 5 zmm),
 * the quants placed where the weight's nibbles sit in its raw 20-byte blocks:
 *   lo[320]: byte 20*b+4+j = q[16g+b][j]      (j < 16; bytes 20*b..20*b+3, the d/m header, are 0)
 *   hi[320]: byte 20*b+4+j = q[16g+b][16+j]
 *   d[16] float, s[16] float */
#define G20_BYTES 768

#define GG_ALIGN64(x) (((x) + 63) & ~(size_t)63)

static inline a32_lay_t a32_lay(int64_t K) {
    a32_lay_t L;
    L.nb = K / 32;
    L.nbp = (L.nb + 1) & ~(int64_t)1;
    size_t o = (size_t)L.nbp * 32;
    L.o_qsu = o; o += (size_t)L.nbp * 32;
    L.o_d = o;   o += (size_t)L.nbp * 4;
    L.o_s = o;   o += (size_t)L.nbp * 4;
    L.o_sum = o; o += (size_t)L.nbp * 4;
    o = GG_ALIGN64(o);
    L.o_dpat = o; o += (size_t)L.nbp * 32;
    L.o_cpat = o; o += (size_t)L.nbp * 32;
    L.o_spat = o; o += (size_t)L.nbp * 32;
    L.ng = L.nb / 16;
    L.o_g20 = o; o += (size_t)L.ng * G20_BYTES;
    L.stride = GG_ALIGN64(o);
    return L;
}

#define Q8K_SB_BYTES 576
#define Q8K_O_D 0
#define Q8K_O_BSUMS 16
#define Q8K_O_BSUM32 48
#define Q8K_O_QS 64
#define Q8K_O_QSU 320 /* qs ^ 0x80, filled for the panel kernels only */

static inline size_t q8k_stride(int64_t K) { return (size_t)(K / 256) * Q8K_SB_BYTES; }
static inline size_t af_stride(int64_t K) { return GG_ALIGN64((size_t)((K + 15) & ~(int64_t)15) * 4); }

/* kernel: Y[m*ldy + r] = dot(W row r, X row m) for r in [r0, r1), m in [0, M) */
typedef void (*gemm_fn)(const uint8_t *W, size_t ws, int64_t r0, int64_t r1, int64_t K,
                        const uint8_t *X, size_t xs, int64_t M, float *Y, int64_t ldy);

typedef struct {
    int type;
    int blck;     /* elements per block */
    int bbytes;   /* bytes per block */
    int afmt;     /* activation format */
    int with_s;   /* Q8_1 (s = d*sum) */
    int corr;     /* c in the -c*sum(x) correction the kernel expects in cpat */
    int g20;      /* kernel reads the Q4_1 group layout */
    int panel;    /* kernel switches to 16-row panels for M >= GG_PANEL_M (wants 16-row chunks) */
    gemm_fn fn;
    const char *impl;
} ktype_t;

/* exported API */
GG_API const char *gg_version(void);
GG_API const char *gg_isa(void);
GG_API int gg_max_threads(void);
GG_API void gg_set_spin_us(int64_t us);
GG_API int gg_kernel_info(int type, char *buf, int n);
GG_API int gg_matmul(const uint8_t *w, int type, int64_t N, int64_t K, int64_t ws, const float *x,
                     int64_t M, int64_t ldx, float *y, int64_t ldy, int nth);
GG_API int gg_matmul_multi(int nseg, const int64_t *wptrs, const int32_t *types, const int64_t *Ns,
                           const int64_t *wstrides, const int64_t *coloffs, int64_t K, const float *x,
                           int64_t M, int64_t ldx, float *y, int64_t ldy, int nth);
GG_API int64_t gg_plan_create(int nseg, const int64_t *wptrs, const int32_t *types, const int64_t *Ns,
                              const int64_t *wstrides, const int64_t *coloffs, int64_t K, int nth);
GG_API int gg_plan_free(int64_t id);
GG_API int gg_plan_run(int64_t id, const float *x, float *y, int64_t M);
GG_API int gg_plan_run_ex(int64_t id, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy, int nth);
GG_API void gg_set_default_threads(int n);
GG_API void gg_set_exact(int on);
GG_API int gg_get_exact(void);
GG_API int gg_quantize_row(int vec_type, const float *x, int64_t K, int8_t *qs, float *d, float *s,
                           int16_t *bsums);
GG_API int64_t gg_noop(int64_t a, int64_t b, int64_t c, int64_t d, int64_t e, int64_t f, int64_t g,
                       int64_t h, int64_t i, int64_t j, int64_t k);

#endif
