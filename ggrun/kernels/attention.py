"""Decode attention for one new token per sequence: RoPE on q and k, k/v into the f16
cache at ``pos`` (a device scalar, so a CUDA graph can replay it), then softmax(q·Kᵀ)·V
over positions 0..pos. One program per query head; the first of each GQA group writes the
cache, and every program takes position ``pos`` from its registers, so none waits on another.

Cache layout: k, v [n_kv_head, n_ctx, head_dim] f16 for one layer (a layer's slice of
[n_layer, n_kv_head, n_ctx, head_dim]).

Other cache types (-ctk/-ctv, ggrun/kv_types.py) take ``_decode_attn_kv_kernel``: q8_0 rows are
[n_kv_head, n_ctx, head_dim/32·34] bytes (ggml's block_q8_0: f16 scale, 32 int8 quants). The new
k is quantized as ggml's quantize_row_q8_0, q as well, and q·k is the integer dot of each block
times the two scales (as llama.cpp's CPU vec_dot_q8_0_q8_0, summed in another order); q8_0 v rows
are dequantized and accumulated in f32. f32 rows are attended as f16 (llama.cpp casts them).
With llama.cpp's Hadamard rotation of quantized caches (kv_types.rotation_sizes) q and k are
rotated after RoPE, v before it is stored and the output after, by the same fast transform.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _decode_attn_kernel(q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, pos_ptr, kc_ptr, vc_ptr, o_ptr, scale,
                        stride_kch, stride_kct, stride_cos, G: tl.constexpr, HALF: tl.constexpr,
                        NEOX: tl.constexpr, BT: tl.constexpr):
    hq = tl.program_id(0)                     # one program per query head
    h = hq // G                               # its KV head
    pos = tl.load(pos_ptr)
    HD: tl.constexpr = 2 * HALF
    d = tl.arange(0, HD)
    if NEOX:   # rotate halves: (d, d + HALF)
        j = d % HALF
        partner = (d + HALF) % HD
        sgn = tl.where(d < HALF, -1.0, 1.0)
    else:      # llama "normal": adjacent pairs (2i, 2i + 1)
        j = d // 2
        partner = d ^ 1
        sgn = tl.where(d % 2 == 0, -1.0, 1.0)
    c = tl.load(cos_ptr + pos * stride_cos + j)
    s = tl.load(sin_ptr + pos * stride_cos + j)
    q = tl.load(q_ptr + hq * HD + d) * c + sgn * tl.load(q_ptr + hq * HD + partner) * s
    q = q.to(tl.float16).to(tl.float32)       # llama.cpp rounds Q to f16 for K·Q
    kn = (tl.load(k_ptr + h * HD + d) * c + sgn * tl.load(k_ptr + h * HD + partner) * s).to(tl.float16)
    vn = tl.load(v_ptr + h * HD + d).to(tl.float16)
    kc = kc_ptr + h * stride_kch
    vc = vc_ptr + h * stride_kch
    if hq % G == 0:                           # the first query head of the group writes the cache
        tl.store(kc + pos * stride_kct + d, kn)
        tl.store(vc + pos * stride_kct + d, vn)
    # positions before pos come from the cache; pos itself from registers (no cross-program wait)
    s_new = tl.sum(kn.to(tl.float32) * q, 0) * scale
    m_i = s_new
    l_i = s_new * 0.0 + 1.0
    acc = vn.to(tl.float32)
    for t0 in range(0, pos, BT):
        t = t0 + tl.arange(0, BT)
        tm = t < pos
        kt = tl.load(kc + t[:, None] * stride_kct + d[None, :], mask=tm[:, None], other=0.0).to(tl.float32)
        sc = tl.where(tm, tl.sum(kt * q[None, :], 1) * scale, float("-inf"))       # [BT]
        m_new = tl.maximum(m_i, tl.max(sc, 0))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(sc - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        vt = tl.load(vc + t[:, None] * stride_kct + d[None, :], mask=tm[:, None], other=0.0).to(tl.float32)
        acc = acc * alpha + tl.sum(p[:, None] * vt, 0)
        m_i = m_new
    tl.store(o_ptr + hq * HD + d, acc / l_i)


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     pos: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, scale: float, neox: bool = False,
                     out: torch.Tensor | None = None, block_t: int | None = None) -> torch.Tensor:
    """q [H*hd], k, v [Hkv*hd] f32 (before RoPE); cos, sin [n_pos, hd/2] f32; pos int32/64 [1];
    k_cache, v_cache [Hkv, n_ctx, hd] f16 (written at pos) → o [H*hd] f32."""
    Hkv, n_ctx, hd = k_cache.shape
    H = q.numel() // hd
    G = H // Hkv
    assert H * hd == q.numel() and Hkv * hd == k.numel() == v.numel() and G * Hkv == H
    assert k_cache.stride() == v_cache.stride() and k_cache.stride(2) == 1 and k_cache.dtype == torch.float16
    assert cos.shape[1] * 2 == hd and cos.stride(1) == 1 and cos.stride() == sin.stride(), "rope over the whole head"
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous() and pos.numel() == 1
    if out is None:
        out = torch.empty(H * hd, dtype=torch.float32, device=q.device)
    _decode_attn_kernel[(H,)](q, k, v, cos, sin, pos, k_cache, v_cache, out, float(scale), k_cache.stride(0),
                              k_cache.stride(1), cos.stride(0), G=G, HALF=hd // 2, NEOX=neox, BT=block_t or 64,
                              num_warps=4)
    return out


# --- other cache types -------------------------------------------------------------------

T_F32, T_F16, T_Q8 = 0, 1, 8        # ggml type ids


@triton.jit
def _fwht(x, SCALE, HD: tl.constexpr, LOG2N: tl.constexpr):
    """x [HD] f32 → every run of 2**LOG2N values times the orthonormal Hadamard matrix, as
    ggml-cpu's fwht: x·SCALE (SCALE = 1/sqrtf(n)), then butterflies u+v, u−v with stride 1, 2, ..."""
    x = x * SCALE
    sel = (tl.arange(0, 2) == 0)[None, :, None]                       # [1, 2, 1]
    for s in tl.static_range(LOG2N):
        h: tl.constexpr = 1 << s
        y = tl.reshape(x, [HD // (2 * h), 2, h])                        # pairs (i + j, i + h + j)
        u = tl.sum(tl.where(sel, y, 0.0), 1)                             # [HD/2h, h]
        v = tl.sum(tl.where(sel, 0.0, y), 1)
        x = tl.reshape(tl.where(sel, (u + v)[:, None, :], (u - v)[:, None, :]), [HD])
    return x


@triton.jit
def _rne(x):
    """Round half to even of float values (exact: comparisons against f + 0.5 only)."""
    f = tl.floor(x)
    h = f + 0.5
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    return tl.where((x > h) | ((x == h) & odd), f + 1.0, f)


@triton.jit
def _quant_q8(x):
    """x [NB, 32] f32 → (q [NB, 32] integer values as f32, d [NB] f16-rounded scale as f32):
    ggml's quantize_row_q8_0 (d = amax/127, q = round-half-even(x·127/amax))."""
    amax = tl.max(tl.abs(x), 1)                                          # [NB]
    c = amax * 0.0 + 127.0
    d = tl.math.div_rn(amax, c)
    inv = tl.where(amax != 0.0, tl.math.div_rn(c, tl.where(amax != 0.0, amax, c)), 0.0)
    return _rne(x * inv[:, None]), d.to(tl.float16).to(tl.float32)


@triton.jit
def _ld_f16_bytes(p, mask):
    """Little-endian f16 at byte pointers p (uint8) → f32."""
    lo = tl.load(p, mask=mask, other=0).to(tl.uint16)
    hi = tl.load(p + 1, mask=mask, other=0).to(tl.uint16)
    return ((hi << 8) | lo).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _st_q8(row, boff, soff, q, d):
    """A q8_0 head row at byte pointer ``row``: quants q [NB, 32] at boff, f16 scales d [NB] at soff."""
    tl.store(row + boff, q.to(tl.int32).to(tl.int8).to(tl.uint8, bitcast=True))
    bits = d.to(tl.float16).to(tl.uint16, bitcast=True)
    tl.store(row + soff, (bits & 0xFF).to(tl.uint8))
    tl.store(row + soff + 1, (bits >> 8).to(tl.uint8))


@triton.jit
def _decode_attn_kv_kernel(q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, pos_ptr, kc_ptr, vc_ptr, o_ptr, scale,
                           skh, skt, svh, svt, stride_cos, rot_scale_k, rot_scale_v, G: tl.constexpr,
                           HALF: tl.constexpr, NEOX: tl.constexpr, BT: tl.constexpr, KT: tl.constexpr,
                           VT: tl.constexpr, LOG2_RK: tl.constexpr, LOG2_RV: tl.constexpr):
    hq = tl.program_id(0)                     # one program per query head
    h = hq // G
    pos = tl.load(pos_ptr)
    HD: tl.constexpr = 2 * HALF
    NB: tl.constexpr = HD // 32
    d = tl.arange(0, HD)
    if NEOX:
        j = d % HALF
        partner = (d + HALF) % HD
        sgn = tl.where(d < HALF, -1.0, 1.0)
    else:
        j = d // 2
        partner = d ^ 1
        sgn = tl.where(d % 2 == 0, -1.0, 1.0)
    c = tl.load(cos_ptr + pos * stride_cos + j)
    s = tl.load(sin_ptr + pos * stride_cos + j)
    q = tl.load(q_ptr + hq * HD + d) * c + sgn * tl.load(q_ptr + hq * HD + partner) * s     # [HD]
    kf = tl.load(k_ptr + h * HD + d) * c + sgn * tl.load(k_ptr + h * HD + partner) * s
    vf = tl.load(v_ptr + h * HD + d)
    if LOG2_RK > 0:                           # llama.cpp's rotation of a quantized K cache
        q = _fwht(q, rot_scale_k, HD, LOG2_RK)
        kf = _fwht(kf, rot_scale_k, HD, LOG2_RK)
    if LOG2_RV > 0:
        vf = _fwht(vf, rot_scale_v, HD, LOG2_RV)
    q2 = tl.reshape(q, [NB, 32])
    k2 = tl.reshape(kf, [NB, 32])
    v2 = tl.reshape(vf, [NB, 32])
    ib = tl.arange(0, NB)
    d2 = ib[:, None] * 32 + tl.arange(0, 32)[None, :]                  # [NB, 32] value index
    boff = ib[:, None] * 34 + 2 + tl.arange(0, 32)[None, :]           # q8_0: byte offset of the quants
    soff = ib * 34                                                     # q8_0: byte offset of the scales
    kc = kc_ptr + h * skh
    vc = vc_ptr + h * svh
    first = hq % G == 0                       # the first query head of the group writes the cache
    # the new row: stored, and the values this program attends to (no cross-program wait)
    if KT == 8:
        qq, dq = _quant_q8(q2)                # Q in K's dot type, as llama.cpp's CPU
        kq, dk = _quant_q8(k2)
        if first:
            _st_q8(kc + pos * skt, boff, soff, kq, dk)
        s_new = tl.sum(tl.sum(kq * qq, 1) * (dk * dq), 0) * scale
    else:
        qh = q2.to(tl.float16).to(tl.float32)
        if first:
            if KT == 1:
                tl.store(kc + pos * skt + d2, k2.to(tl.float16))
            else:
                tl.store(kc + pos * skt + d2, k2)
        s_new = tl.sum(tl.sum(k2.to(tl.float16).to(tl.float32) * qh, 1), 0) * scale
    if VT == 8:
        vq, dv = _quant_q8(v2)
        if first:
            _st_q8(vc + pos * svt, boff, soff, vq, dv)
        acc = vq * dv[:, None]                                          # [NB, 32] f32
    else:
        if first:
            if VT == 1:
                tl.store(vc + pos * svt + d2, v2.to(tl.float16))
            else:
                tl.store(vc + pos * svt + d2, v2)
        acc = v2.to(tl.float16).to(tl.float32)
    m_i = s_new
    l_i = s_new * 0.0 + 1.0
    for t0 in range(0, pos, BT):
        t = t0 + tl.arange(0, BT)
        tm = t < pos
        t3 = t[:, None, None]
        m3 = tm[:, None, None]
        if KT == 8:
            kt = tl.load(kc + t3 * skt + boff[None], mask=m3, other=0).to(tl.int8, bitcast=True).to(tl.float32)
            dkt = _ld_f16_bytes(kc + t[:, None] * skt + soff[None, :], tm[:, None])           # [BT, NB]
            sc = tl.sum(tl.sum(kt * qq[None], 2) * (dkt * dq[None, :]), 1) * scale
        else:
            kt = tl.load(kc + t3 * skt + d2[None], mask=m3, other=0.0).to(tl.float16).to(tl.float32)
            sc = tl.sum(tl.sum(kt * qh[None], 2), 1) * scale
        sc = tl.where(tm, sc, float("-inf"))                                                  # [BT]
        m_new = tl.maximum(m_i, tl.max(sc, 0))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(sc - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        if VT == 8:
            vq_t = tl.load(vc + t3 * svt + boff[None], mask=m3, other=0).to(tl.int8, bitcast=True).to(tl.float32)
            vt = vq_t * _ld_f16_bytes(vc + t[:, None] * svt + soff[None, :], tm[:, None])[:, :, None]
        else:
            vt = tl.load(vc + t3 * svt + d2[None], mask=m3, other=0.0).to(tl.float16).to(tl.float32)
        acc = acc * alpha + tl.sum(p[:, None, None] * vt, 0)
        m_i = m_new
    o = tl.reshape(acc / l_i, [HD])
    if LOG2_RV > 0:                           # back from V's rotation
        o = _fwht(o, rot_scale_v, HD, LOG2_RV)
    tl.store(o_ptr + hq * HD + d, o)


def _log2(n: int) -> int:
    assert n == 0 or n & (n - 1) == 0, n
    return n.bit_length() - 1 if n else 0


def decode_attention_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        pos: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, scale: float,
                        neox: bool = False, out: torch.Tensor | None = None, block_t: int | None = None,
                        rot: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``decode_attention`` for any cache types: k_cache, v_cache [Hkv, n_ctx, R] as stored
    (f16/f32: R = hd; q8_0 uint8: R = hd/32·34; the last dim contiguous). ``rot``: (n_rot_k,
    n_rot_v), llama.cpp's Hadamard rotation of quantized caches (0: none). → o [H*hd] f32."""
    import numpy as np

    from ..kv_types import type_of

    Hkv, n_ctx, _ = k_cache.shape
    hd = cos.shape[1] * 2
    H = q.numel() // hd
    G = H // Hkv
    assert H * hd == q.numel() and Hkv * hd == k.numel() == v.numel() and G * Hkv == H and hd % 32 == 0
    assert k_cache.stride(2) == 1 and v_cache.stride(2) == 1 and cos.stride(1) == 1 and cos.stride() == sin.stride()
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous() and pos.numel() == 1
    tid = {"f32": T_F32, "f16": T_F16, "q8_0": T_Q8}
    kt, vt = tid[type_of(k_cache)], tid[type_of(v_cache)]
    rk, rv = rot

    def rs(n: int) -> float:
        return float(np.float32(1.0) / np.sqrt(np.float32(n))) if n else 1.0

    if out is None:
        out = torch.empty(H * hd, dtype=torch.float32, device=q.device)
    _decode_attn_kv_kernel[(H,)](q, k, v, cos, sin, pos, k_cache, v_cache, out, float(scale), k_cache.stride(0),
                                 k_cache.stride(1), v_cache.stride(0), v_cache.stride(1), cos.stride(0), rs(rk), rs(rv),
                                 G=G, HALF=hd // 2, NEOX=neox, BT=block_t or 32, KT=kt, VT=vt, LOG2_RK=_log2(rk),
                                 LOG2_RV=_log2(rv), num_warps=4)
    return out
