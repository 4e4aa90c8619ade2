// ggrun CPU ops other than matmul, reproducing llama.cpp's CPU numerics bit for bit:
// attention (its flash-attention paths), RoPE, SwiGLU, RMSNorm. Built into the same library as
// kernels.c by ggrun/cpu (-O3 -march=native -ffp-contract=off): every fused multiply-add that
// llama.cpp's compiled code performs is written out here as fmaf or an FMA intrinsic.

// Causal attention over an f16 KV cache with llama.cpp's CPU flash-attention numerics.
//
// q   [n_q, H, D]   f32, query i sits at position start + i
// k,v [T, Hkv, D]   f16 (raw bits), T = start + n_q positions held
// out [n_q, H, D]   f32
//
// Three paths, chosen as ggml-cpu's flash_attn_ext does:
//  * n_q >= 64:          "tiled": Q f32, K/V f32, 64×64 tiles, online softmax per KV tile,
//                        VKQ accumulated in f32 with FMAs in KV order.
//  * n_q == 1, n_kv>=512: "split-KV": n_kv (padded to 256) cut in n_split chunks; each is a
//                        one-chunk pass, partials (M, S, VKQ) merged in f32.
//  * otherwise:          "one-chunk": Q rounded to f16, K·Q dot, online softmax with expf,
//                        VKQ accumulated in f16 (rounded after every FMA), V /= S at the end.
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

// e[i] = exp(x[i] - max) for 64 scores as ggml_vec_soft_max_f32 computes them (its vector expf,
// one float reduction per vector, summed in double). Defined below, after the vector expf.
static double softmax64(float *x, float max);

static inline float h2f(uint16_t h) {
    _Float16 x; memcpy(&x, &h, 2); return (float)x;
}
static inline uint16_t f2h(float f) {
    _Float16 x = (_Float16)f; uint16_t h; memcpy(&h, &x, 2); return h;
}

// f16 dot with f32 accumulation in ggml's AVX-512 order: 4 accumulators of 16 lanes
// over steps of 64, then a tree reduction; scalar tail.
static float dot_f16(const uint16_t *a, const uint16_t *b, int n) {
    float acc[4][16];
    memset(acc, 0, sizeof acc);
    int np = n & ~63;
    for (int i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++)
                acc[j][l] = fmaf(h2f(a[i + 16*j + l]), h2f(b[i + 16*j + l]), acc[j][l]);
    float t[16];
    for (int l = 0; l < 16; l++) t[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    for (int w = 8; w >= 1; w >>= 1)
        for (int l = 0; l < w; l++) t[l] = t[l] + t[l + w];
    double sum = t[0];
    for (int i = np; i < n; i++) sum += (double)(h2f(a[i]) * h2f(b[i]));
    return (float)sum;
}

// One query row against kv positions [c0, c1) (only those ≤ qpos count).
// Writes M, S and the f16-accumulated VKQ (as f32) — llama.cpp's one_chunk.
static void one_chunk(const float *q, const uint16_t *k, const uint16_t *v, int D, int64_t kv_stride,
                      int c0, int c1, int qpos, float scale, float *M_out, float *S_out, float *vkq) {
    uint16_t qh[512];
    uint16_t acc[512];
    for (int d = 0; d < D; d++) { qh[d] = f2h(q[d]); acc[d] = 0; }
    float S = 0.0f, M = -INFINITY;
    int end = c1 < qpos + 1 ? c1 : qpos + 1;
    for (int ic = c0; ic < end; ic++) {
        const uint16_t *kr = k + (int64_t)ic * kv_stride;
        const uint16_t *vr = v + (int64_t)ic * kv_stride;
        float s = dot_f16(kr, qh, D) * scale;
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            float Mold = M;
            M = s;
            ms = expf(Mold - M);
            for (int d = 0; d < D; d++) acc[d] = f2h(h2f(acc[d]) * ms);
        } else {
            vs = expf(s - M);
        }
        for (int d = 0; d < D; d++) acc[d] = f2h(fmaf(h2f(vr[d]), vs, h2f(acc[d])));
        S = fmaf(S, ms, vs);                 // ggml's compiled code fuses this
    }
    for (int d = 0; d < D; d++) vkq[d] = h2f(acc[d]);
    *M_out = M; *S_out = S;
}

// Tiled f32 path for one query row (the per-row arithmetic of ggml's tiled kernel).
static void tiled_row(const float *q, const uint16_t *k, const uint16_t *v, int D, int64_t kv_stride,
                      int n_kv, int qpos, float scale, float *out) {
    float vkq[512];
    float kq[64];
    memset(vkq, 0, sizeof(float) * D);
    float S = 0.0f, M = -INFINITY;
    for (int ic = 0; ic < n_kv; ic += 64) {
        int tile = n_kv - ic < 64 ? n_kv - ic : 64;
        if (ic > qpos) break;                             // the rest is masked for this row
        float tmax = -INFINITY;
        for (int tk = 0; tk < 64; tk++) {
            int pos = ic + tk;
            if (tk >= tile || pos > qpos) { kq[tk] = -INFINITY; continue; }
            const uint16_t *kr = k + (int64_t)pos * kv_stride;
            float s = 0.0f;
            for (int d = 0; d < D; d++) s = fmaf(q[d], h2f(kr[d]), s);
            s *= scale;
            kq[tk] = s;
            if (s > tmax) tmax = s;
        }
        if (tmax == -INFINITY) continue;
        float Mnew = fmaxf(M, tmax);
        if (Mnew > M) {
            float ms = expf(M - Mnew);
            for (int d = 0; d < D; d++) vkq[d] *= ms;
            S *= ms;
        }
        M = Mnew;
        S = (float)((double)S + softmax64(kq, Mnew));
        for (int tk = 0; tk < tile; tk++) {
            if (kq[tk] == 0.0f) continue;
            const uint16_t *vr = v + (int64_t)(ic + tk) * kv_stride;
            for (int d = 0; d < D; d++) vkq[d] = fmaf(kq[tk], h2f(vr[d]), vkq[d]);
        }
    }
    float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int d = 0; d < D; d++) out[d] = vkq[d] * inv;
}

// n_split: llama.cpp's thread count (its split-KV chunks follow it).
void ggrun_attention_f16(const float *q, const uint16_t *k, const uint16_t *v, float *out,
                         int n_q, int H, int Hkv, int D, int start, float scale, int n_split,
                         int kv_pad) {
    const int g = H / Hkv;
    const int64_t kv_stride = (int64_t)Hkv * D;
    const int T = start + n_q;
    int n_kv = ((T + kv_pad - 1) / kv_pad) * kv_pad;      // llama.cpp pads n_kv (≥ 256)
    if (n_kv < kv_pad) n_kv = kv_pad;
    for (int i = 0; i < n_q; i++) {
        const int qpos = start + i;
        for (int h = 0; h < H; h++) {
            const float *qr = q + ((int64_t)i * H + h) * D;
            const uint16_t *kh = k + (h / g) * D;
            const uint16_t *vh = v + (h / g) * D;
            float *o = out + ((int64_t)i * H + h) * D;
            if (n_q >= 64) {
                tiled_row(qr, kh, vh, D, kv_stride, T, qpos, scale, o);
            } else if (n_q == 1 && n_kv >= 512 && n_split > 1) {
                int chunk = (n_kv + n_split - 1) / n_split;
                float Mf = -INFINITY, Sf = 0.0f, vf[512], vc[512];
                memset(vf, 0, sizeof(float) * D);
                for (int c = 0; c < n_split; c++) {
                    int c0 = c * chunk, c1 = c0 + chunk < n_kv ? c0 + chunk : n_kv;
                    if (c0 >= n_kv) continue;
                    float Mc, Sc;
                    one_chunk(qr, kh, vh, D, kv_stride, c0, c1, qpos, scale, &Mc, &Sc, vc);
                    if (Sc == 0.0f) continue;
                    float Mn = fmaxf(Mf, Mc);
                    float so = expf(Mf - Mn), sn = expf(Mc - Mn);
                    for (int d = 0; d < D; d++) vf[d] = fmaf(vf[d], so, vc[d] * sn);
                    Sf = fmaf(Sf, so, Sc * sn);
                    Mf = Mn;
                }
                float inv = Sf != 0.0f ? 1.0f / Sf : 0.0f;
                for (int d = 0; d < D; d++) o[d] = Sf != 0.0f ? vf[d] * inv : vf[d];
            } else {
                float M, S;
                one_chunk(qr, kh, vh, D, kv_stride, 0, T, qpos, scale, &M, &S, o);
                float inv = S == 0.0f ? 0.0f : 1.0f / S;
                for (int d = 0; d < D; d++) o[d] *= inv;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Quantized KV caches (-ctk/-ctv q8_0). A cache row [Hkv*D] is stored as ggml's block_q8_0 run:
// D/32 blocks of 34 bytes per head (f16 scale d, then 32 int8 quants). With a q8_0 K or V
// ggml-cpu's flash attention always takes its one_chunk kernel (no tiles, no split-KV):
//  * K q8_0: Q is quantized to q8_0 as well, K·Q = ggml_vec_dot_q8_0_q8_0 (AVX2 order).
//  * V q8_0: each V row is dequantized to f32 (q·d) and accumulated in f32 with FMAs.
//  * an f16 K or V keeps the f16 dot / f16 accumulator of the f16 path.
#define KV_F16 1
#define KV_Q8_0 8
#define Q8_BLOCK 34

// quantize_row_q8_0 of ggml-cpu (x86): amax, d = amax/127 stored as f16 (RNE), id = 127/amax,
// q = round-half-even(x·id). n: a multiple of 32.
void ggrun_quantize_row_q8_0(const float *x, uint8_t *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += Q8_BLOCK) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) { float a = fabsf(x[j]); amax = a > amax ? a : amax; }
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        const uint16_t dh = f2h(d);
        memcpy(y, &dh, 2);
        for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)nearbyintf(x[j] * id);
    }
}

// ggml_vec_dot_q8_0_q8_0, AVX2 path: 8 float lanes, lane l of block b adds d_x·d_y times the
// int sum of quants 4l..4l+3 (one FMA); then hsum_float_8's reduction order.
static float dot_q8_0(const uint8_t *x, const uint8_t *y, int n) {
    float acc[8] = {0};
    for (int b = 0; b < n / 32; b++, x += Q8_BLOCK, y += Q8_BLOCK) {
        uint16_t dx, dy;
        memcpy(&dx, x, 2); memcpy(&dy, y, 2);
        const float d = h2f(dx) * h2f(dy);
        const int8_t *qx = (const int8_t *)(x + 2), *qy = (const int8_t *)(y + 2);
        for (int l = 0; l < 8; l++) {
            int s = 0;
            for (int j = 4 * l; j < 4 * l + 4; j++) s += qx[j] * qy[j];
            acc[l] = fmaf(d, (float)s, acc[l]);
        }
    }
    return ((acc[4] + acc[0]) + (acc[6] + acc[2])) + ((acc[5] + acc[1]) + (acc[7] + acc[3]));
}

// One query row against kv positions [0, qpos] for any K/V types (ggml's one_chunk):
// k, v point at the head's data of position 0, rows ks/vs bytes apart. out: [D] f32, normalized.
static void one_chunk_kv(const float *q, const uint8_t *k, const uint8_t *v, int kt, int vt, int D,
                         int64_t ks, int64_t vs_, int qpos, float scale, float *out) {
    uint16_t qh[512], acc16[512];
    uint8_t qq[512 / 32 * Q8_BLOCK];
    float acc[512], vrow[512];
    if (kt == KV_Q8_0) ggrun_quantize_row_q8_0(q, qq, D);
    else for (int d = 0; d < D; d++) qh[d] = f2h(q[d]);
    for (int d = 0; d < D; d++) { acc16[d] = 0; acc[d] = 0.0f; }
    float S = 0.0f, M = -INFINITY;
    for (int ic = 0; ic <= qpos; ic++) {
        const uint8_t *kr = k + ic * ks, *vr = v + ic * vs_;
        float s = (kt == KV_Q8_0 ? dot_q8_0(kr, qq, D) : dot_f16((const uint16_t *)kr, qh, D)) * scale;
        float ms = 1.0f, vs = 1.0f;
        const int newmax = s > M;
        if (newmax) { ms = expf(M - s); M = s; } else { vs = expf(s - M); }
        if (vt == KV_F16) {
            const uint16_t *vh = (const uint16_t *)vr;
            if (newmax) for (int d = 0; d < D; d++) acc16[d] = f2h(h2f(acc16[d]) * ms);
            for (int d = 0; d < D; d++) acc16[d] = f2h(fmaf(h2f(vh[d]), vs, h2f(acc16[d])));
        } else {
            if (newmax) for (int d = 0; d < D; d++) acc[d] *= ms;
            for (int b = 0; b < D / 32; b++) {                  // dequantize_row_q8_0
                uint16_t dh; memcpy(&dh, vr + b * Q8_BLOCK, 2);
                const float dd = h2f(dh);
                const int8_t *qs = (const int8_t *)(vr + b * Q8_BLOCK + 2);
                for (int j = 0; j < 32; j++) vrow[b * 32 + j] = qs[j] * dd;
            }
            for (int d = 0; d < D; d++) acc[d] = fmaf(vrow[d], vs, acc[d]);
        }
        S = fmaf(S, ms, vs);
    }
    if (vt == KV_F16) for (int d = 0; d < D; d++) acc[d] = h2f(acc16[d]);
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int d = 0; d < D; d++) out[d] = acc[d] * inv;
}

// llama.cpp's attention rotation for quantized KV caches (llama_mul_mat_hadamard, which ggml-cpu
// runs as ggml_compute_forward_fwht): every run of n values (n a power of 2) is scaled by
// 1/sqrtf(n), then the Walsh-Hadamard butterflies (u+v, u−v) for len = 1, 2, .., n/2 in place.
// The orthonormal Hadamard matrix is its own inverse: the same call undoes it.
void ggrun_fwht(float *x, int64_t n_total, int n) {
    const float scale = 1.0f / sqrtf((float)n);
    for (int64_t r = 0; r + n <= n_total; r += n) {
        float *row = x + r;
        for (int j = 0; j < n; j++) row[j] = row[j] * scale;
        for (int len = 1; len < n; len <<= 1)
            for (int i = 0; i < n; i += 2 * len)
                for (int j = 0; j < len; j++) {
                    const float u = row[i + j], v = row[i + len + j];
                    row[i + j] = u + v;
                    row[i + len + j] = u - v;
                }
    }
}

// Bytes of one cache row of Hkv heads of D values.
static int64_t kv_row_bytes(int type, int Hkv, int D) {
    return type == KV_Q8_0 ? (int64_t)Hkv * (D / 32) * Q8_BLOCK : (int64_t)Hkv * D * 2;
}

// Attention over a KV cache of types k_type, v_type (KV_F16 or KV_Q8_0), shapes as
// ggrun_attention_f16 (k, v: [T, row bytes]). Both f16: exactly ggrun_attention_f16.
void ggrun_attention_kv(const float *q, const void *k, const void *v, float *out,
                        int n_q, int H, int Hkv, int D, int start, float scale, int n_split,
                        int kv_pad, int k_type, int v_type) {
    if (k_type == KV_F16 && v_type == KV_F16) {
        ggrun_attention_f16(q, k, v, out, n_q, H, Hkv, D, start, scale, n_split, kv_pad);
        return;
    }
    const int g = H / Hkv;
    const int64_t ks = kv_row_bytes(k_type, Hkv, D), vs = kv_row_bytes(v_type, Hkv, D);
    const int64_t kh = kv_row_bytes(k_type, 1, D), vh = kv_row_bytes(v_type, 1, D);
    for (int i = 0; i < n_q; i++)
        for (int h = 0; h < H; h++)
            one_chunk_kv(q + ((int64_t)i * H + h) * D, (const uint8_t *)k + (h / g) * kh,
                         (const uint8_t *)v + (h / g) * vh, k_type, v_type, D, ks, vs, start + i, scale,
                         out + ((int64_t)i * H + h) * D);
}

// ---------------------------------------------------------------------------------------
// RoPE ("normal": adjacent pairs), as ggml's rope_f32: cache by repeated float products,
// glibc cosf/sinf, rotation written as ggml writes it (gcc contracts it the same way).
// cache: [n_pos, n_dims] interleaved (cos, sin) pairs.
void ggrun_rope_cache(float *cache, int n_pos, int n_dims, float freq_base, float freq_scale,
                      float ext_factor, float attn_factor, float corr0, float corr1) {
    const float theta_scale = powf(freq_base, -2.0f / n_dims);
    for (int p = 0; p < n_pos; p++) {
        float theta = (float)p;
        float *c = cache + (int64_t)p * n_dims;
        for (int i0 = 0; i0 < n_dims; i0 += 2) {
            float theta_extrap = theta;
            float theta_interp = freq_scale * theta_extrap;
            float th = theta_interp;
            float mscale = attn_factor;
            if (ext_factor != 0.0f) {
                float y = (i0 / 2 - corr0) / fmaxf(0.001f, corr1 - corr0);
                float ramp = 1 - fminf(1, fmaxf(0, y));
                float ramp_mix = ramp * ext_factor;
                th = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
                mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale);
            }
            c[i0 + 0] = cosf(th) * mscale;
            c[i0 + 1] = sinf(th) * mscale;
            theta *= theta_scale;
        }
    }
}

// x: [n, n_head, head_dim] f32 in place; pos[n]; cache from ggrun_rope_cache.
void ggrun_rope_apply(float *x, const int32_t *pos, int n, int n_head, int head_dim, int n_dims,
                      const float *cache, int neox) {
    for (int t = 0; t < n; t++) {
        const float *c = cache + (int64_t)pos[t] * n_dims;
        for (int h = 0; h < n_head; h++) {
            float *row = x + ((int64_t)t * n_head + h) * head_dim;
            if (!neox) {
                for (int i0 = 0; i0 < n_dims; i0 += 2) {
                    const float cos_theta = c[i0 + 0];
                    const float sin_theta = c[i0 + 1];
                    const float x0 = row[i0];
                    const float x1 = row[i0 + 1];
                    row[i0]     = x0*cos_theta - x1*sin_theta;
                    row[i0 + 1] = x0*sin_theta + x1*cos_theta;
                }
            } else {
                const int off = n_dims / 2;
                for (int i0 = 0; i0 < n_dims; i0 += 2) {
                    const float cos_theta = c[i0 + 0];
                    const float sin_theta = c[i0 + 1];
                    float *src = row + i0 / 2;
                    const float x0 = src[0];
                    const float x1 = src[off];
                    src[0]   = x0*cos_theta - x1*sin_theta;
                    src[off] = x0*sin_theta + x1*cos_theta;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// SwiGLU: y = silu(g) * u with ggml's vector expf (an ARM-derived polynomial), so the
// values are ggml's bit for bit on x86 (AVX-512 DQ or AVX2+FMA); libm elsewhere.
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
static inline __m512 v_expf(__m512 x) {
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 d = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0F)));
    const __m512 res = _mm512_scalef_ps(j, n);
    if (_mm512_kortestz(d, d)) return res;
    const __m512 zero = _mm512_setzero_ps();
    const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, zero, _CMP_LE_OQ), _mm512_set1_ps(INFINITY), zero);
    return _mm512_mask_blend_ps(d, res, alt);
}
static inline __m512 v_silu(__m512 x) {
    const __m512 one = _mm512_set1_ps(1);
    const __m512 neg_x = _mm512_sub_ps(_mm512_setzero_ps(), x);
    return _mm512_div_ps(x, _mm512_add_ps(one, v_expf(neg_x)));
}
#define GGRUN_VSILU 16
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static inline __m256 v_expf(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256i c = _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n),
                                                        _mm256_set1_ps(126), _CMP_GT_OQ));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(_mm256_castsi256_ps(c)))
        return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32(0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000u)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256i d = _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n),
                                                        _mm256_set1_ps(192), _CMP_GT_OQ));
    return _mm256_or_ps(
        _mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
        _mm256_andnot_ps(_mm256_castsi256_ps(d),
            _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(c), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                         _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)))));
}
static inline __m256 v_silu(__m256 x) {
    const __m256 one = _mm256_set1_ps(1);
    const __m256 neg_x = _mm256_sub_ps(_mm256_setzero_ps(), x);
    return _mm256_div_ps(x, _mm256_add_ps(one, v_expf(neg_x)));
}
#define GGRUN_VSILU 8
#endif

static inline float silu_scalar(float x) { return x / (1.0f + expf(-x)); }

// g, u: [n] f32 → y[n] = silu(g) · u   (y may alias g)
void ggrun_swiglu(float *y, const float *g, const float *u, int64_t n) {
    int64_t i = 0;
#if GGRUN_VSILU == 16
    for (; i + 15 < n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(v_silu(_mm512_loadu_ps(g + i)), _mm512_loadu_ps(u + i)));
#elif GGRUN_VSILU == 8
    for (; i + 7 < n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(v_silu(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i)));
#endif
    for (; i < n; i++) y[i] = silu_scalar(g[i]) * u[i];
}

// ---------------------------------------------------------------------------------------
// RMSNorm as ggml: squares in float summed in double, in order; then (x·scale)·w.
// x, y: [n_rows, n] f32 (y may alias x); w: [n] f32.
void ggrun_rms_norm(float *y, const float *x, const float *w, int64_t n_rows, int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += (double)(xr[i] * xr[i]);
        const float mean = sum / n;
        const float scale = 1.0f / sqrtf(mean + eps);
        for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * scale * w[i];
    }
}

static double softmax64(float *x, float max) {
    double sum = 0.0;
    int i = 0;
#if GGRUN_VSILU == 16
    for (; i + 15 < 64; i += 16) {
        __m512 val = v_expf(_mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_set1_ps(max)));
        _mm512_storeu_ps(x + i, val);
        sum += (double)_mm512_reduce_add_ps(val);
    }
#elif GGRUN_VSILU == 8
    for (; i + 7 < 64; i += 8) {
        __m256 val = v_expf(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(max)));
        _mm256_storeu_ps(x + i, val);
        __m128 v2 = _mm_add_ps(_mm256_extractf128_ps(val, 1), _mm256_castps256_ps128(val));
        v2 = _mm_add_ps(v2, _mm_movehl_ps(v2, v2));
        v2 = _mm_add_ss(v2, _mm_movehdup_ps(v2));
        sum += (double)_mm_cvtss_f32(v2);
    }
#endif
    for (; i < 64; i++) {
        float e = expf(x[i] - max);
        x[i] = e;
        sum += (double)e;
    }
    return sum;
}

// ---------------------------------------------------------------------------------------
// One call per layer and sequence chunk: RoPE on q and k (in place), k and v stored into the
// cache slot at positions start.. (f16: RNE; q8_0: quantize_row_q8_0 of each row, as ggml's
// set_rows), then attention — the same numerics as the separate ops, without the Python between.
// q [n, H, D], k and v [n, Hkv, D] f32; kc, vc: the slot's cache base [n_ctx, row] of k_type/v_type.
// n_rot_k, n_rot_v (0: none): llama.cpp's Hadamard rotation of a quantized cache — q and k after
// RoPE in runs of n_rot_k, v in runs of n_rot_v before the store, the output back after attention.
// q, k and v are overwritten.
static void store_row(int type, const float *x, void *dst, int64_t row) {
    if (type == KV_Q8_0) { ggrun_quantize_row_q8_0(x, (uint8_t *)dst, row); return; }
    uint16_t *d = (uint16_t *)dst;
    for (int64_t j = 0; j < row; j++) d[j] = f2h(x[j]);
}

void ggrun_rope_store_attend(float *q, float *k, float *v, void *kc, void *vc,
                             const int32_t *pos, int n, int H, int Hkv, int D, int n_dims,
                             const float *rope_cache, int neox, int start, float scale,
                             int n_split, int kv_pad, float *out, int k_type, int v_type,
                             int n_rot_k, int n_rot_v) {
    ggrun_rope_apply(q, pos, n, H, D, n_dims, rope_cache, neox);
    ggrun_rope_apply(k, pos, n, Hkv, D, n_dims, rope_cache, neox);
    const int64_t row = (int64_t)Hkv * D;
    if (n_rot_k) {
        ggrun_fwht(q, (int64_t)n * H * D, n_rot_k);
        ggrun_fwht(k, (int64_t)n * row, n_rot_k);
    }
    if (n_rot_v) ggrun_fwht(v, (int64_t)n * row, n_rot_v);
    const int64_t kb = kv_row_bytes(k_type, Hkv, D), vb = kv_row_bytes(v_type, Hkv, D);
    for (int i = 0; i < n; i++) {
        store_row(k_type, k + i * row, (uint8_t *)kc + (int64_t)(start + i) * kb, row);
        store_row(v_type, v + i * row, (uint8_t *)vc + (int64_t)(start + i) * vb, row);
    }
    ggrun_attention_kv(q, kc, vc, out, n, H, Hkv, D, start, scale, n_split, kv_pad, k_type, v_type);
    if (n_rot_v) ggrun_fwht(out, (int64_t)n * H * D, n_rot_v);
}
