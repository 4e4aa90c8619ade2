"""Decode attention for one new token per sequence: RoPE on q and k, k/v into the f16
cache at ``pos`` (a device scalar, so a CUDA graph can replay it), then softmax(q·Kᵀ)·V
over positions 0..pos. One program per query head; the first of each GQA group writes the
cache, and every program takes position ``pos`` from its registers, so none waits on another.

Cache layout: k, v [n_kv_head, n_ctx, head_dim] f16 for one layer (a layer's slice of
[n_layer, n_kv_head, n_ctx, head_dim]).
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
