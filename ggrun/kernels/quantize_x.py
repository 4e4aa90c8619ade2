"""Activations → 8-bit blocks for the integer matvec kernels (llama.cpp's q8_1 on CUDA).

Per 32 values: d = amax/127, q = round(x/d) (half away from zero), kept as int8; the
kernels also get Σq over each 16 values (for the weight types with offsets) and, per 64 values
(a Q4_K sub-block pair, for the interleaved Q4_K kernel), the record (d_a, d_b, d_a·Σq_a,
d_b·Σq_b) in one 16-byte unit. Optionally fused with what precedes the matmul: RMSNorm
(× weight) or SwiGLU (silu(g)·u).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import early_kw, gdc_sync, pdl_kw, silu_mul

MODE_PLAIN, MODE_RMSNORM, MODE_SWIGLU = 0, 1, 2
# RMSNorm: each program sums the row's squares SSQ values at a time (a power of 2 up to this): a
# row of up to SSQ_MAX values in one step, one round trip to L2 (latency-bound)
SSQ_MAX = 8192


@triton.jit
def q8_blocks(v):
    """v [NB, 2, 16] f32 (blocks of 32 values as two halves) → (q [NB, 2, 16] int32, d [NB] f32,
    s [NB, 2] f32): d = amax/127, q = round(v/d) half away from zero (roundf), s = Σq per 16."""
    amax = tl.max(tl.max(tl.abs(v), 2), 1)                           # [NB]
    d = amax / 127.0
    r = tl.where(d[:, None, None] > 0, v / d[:, None, None], 0.0)
    q = tl.where(r >= 0, tl.floor(r + 0.5), -tl.floor(0.5 - r))      # roundf
    qi = q.to(tl.int32)
    return qi, d, tl.sum(qi, 2).to(tl.float32)


@triton.jit
def store_q8(q_row, d_row, s_row, g_row, k0, K, qi, d, s, NB: tl.constexpr, G: tl.constexpr):
    """``q8_blocks``' result for values k0 .. k0 + 32·NB of one row of a ``QX`` (k0 a multiple of
    32; the row's pointers into q, d, s, g), masked to the row's K values. G: also the per-64
    record (d_a, d_b, d_a·Σq_a, d_b·Σq_b) of the blocks (K a multiple of 64)."""
    offs = tl.arange(0, NB)[:, None, None] * 32 + tl.arange(0, 2)[None, :, None] * 16 + \
        tl.arange(0, 16)[None, None, :]                              # [NB, 2, 16]
    tl.store(q_row + k0 + offs, qi.to(tl.int8), mask=k0 + offs < K)
    bo = k0 // 32 + tl.arange(0, NB)                                 # block index
    tl.store(d_row + bo, d, mask=bo < K // 32)
    so = k0 // 16 + tl.arange(0, NB)[:, None] * 2 + tl.arange(0, 2)[None, :]
    tl.store(s_row + so, s, mask=so < K // 16)
    if G:
        go = (bo // 2) * 4 + bo % 2
        gm = bo < K // 32
        tl.store(g_row + go, d, mask=gm)
        tl.store(g_row + go + 2, d * tl.sum(s, 1), mask=gm)


@triton.jit
def _quant_x_kernel(x_ptr, x2_ptr, nw_ptr, q_ptr, d_ptr, s_ptr, g_ptr, K, stride_x, stride_x2, stride_q, stride_d,
                    stride_s, stride_g, eps, MODE: tl.constexpr, NBLK: tl.constexpr, SSQ: tl.constexpr,
                    G: tl.constexpr, GDC: tl.constexpr, EARLY: tl.constexpr):
    if not EARLY:
        gdc_sync(GDC)
    m = tl.program_id(0).to(tl.int64)
    k0 = tl.program_id(1) * (NBLK * 32)
    ib = tl.arange(0, NBLK)[:, None, None]
    ih = tl.arange(0, 2)[None, :, None]
    il = tl.arange(0, 16)[None, None, :]
    offs = ib * 32 + ih * 16 + il                                    # [NBLK, 2, 16]
    xrow = x_ptr + m * stride_x
    mask = k0 + offs < K
    if MODE == 1:  # the norm's weights: no kernel writes them, so (EARLY) they load before the PDL wait
        nw = tl.load(nw_ptr + k0 + offs, mask=mask, other=0.0)
    if EARLY:
        gdc_sync(GDC)
    v = tl.load(xrow + k0 + offs, mask=mask, other=0.0)
    if MODE == 1:  # every program sums the squares of the whole row (L2 reads, SSQ at a time), then scales its part
        jo = tl.arange(0, SSQ)
        ss = tl.zeros([SSQ], tl.float32)
        for j0 in range(0, K, SSQ):
            t = tl.load(xrow + j0 + jo, mask=j0 + jo < K, other=0.0)
            ss += t * t
        rs = 1.0 / tl.sqrt(tl.sum(ss, 0) / K + eps)
        v = v * rs * nw
    if MODE == 2:
        v = silu_mul(v, tl.load(x2_ptr + m * stride_x2 + k0 + offs, mask=mask, other=0.0))
    qi, d, s = q8_blocks(v)
    store_q8(q_ptr + m * stride_q, d_ptr + m * stride_d, s_ptr + m * stride_s, g_ptr + m * stride_g, k0, K,
             qi, d, s, NBLK, G)


class QX:
    """Quantized activations: q int8 [M, K] (viewed as int32 words by the kernels),
    d f32 [M, K/32] block scales, s f32 [M, K/16] sums of q over 16 values, g f32 [M, K/64, 4]
    per 64 values (d_a, d_b, d_a·Σq_a, d_b·Σq_b) (empty when K is not a multiple of 64)."""

    __slots__ = ("q", "d", "s", "g", "M", "K")

    def __init__(self, q, d, s, g):
        self.q, self.d, self.s, self.g = q, d, s, g
        self.M, self.K = q.shape

    @property
    def words(self) -> torch.Tensor:
        return self.q.view(torch.int32)


def empty_qx(M: int, K: int, device) -> QX:
    return QX(torch.empty(M, K, dtype=torch.int8, device=device), torch.empty(M, K // 32, device=device),
              torch.empty(M, K // 16, device=device), torch.empty(M, K // 64 if K % 64 == 0 else 0, 4, device=device))


def quantize_x(x: torch.Tensor, norm_w: torch.Tensor | None = None, eps: float = 0.0, up: torch.Tensor | None = None,
               out: QX | None = None) -> QX:
    """x [M, K] f32 → ``QX``. With ``norm_w`` [K]: RMSNorm(x)·norm_w first; with ``up`` [M, K]:
    silu(x)·up first. K must be a multiple of 32; rows may be strided (last dim contiguous)."""
    assert x.dim() == 2 and x.dtype == torch.float32 and x.stride(1) == 1, (x.shape, x.dtype, x.stride())
    M, K = x.shape
    assert K % 32 == 0, K
    mode = MODE_PLAIN
    nw = x2 = x
    if norm_w is not None:
        assert up is None and norm_w.shape == (K,) and norm_w.dtype == torch.float32 and norm_w.is_contiguous()
        mode, nw = MODE_RMSNORM, norm_w
    if up is not None:
        assert up.shape == (M, K) and up.dtype == torch.float32 and up.stride(1) == 1
        mode, x2 = MODE_SWIGLU, up
    if out is None:
        out = empty_qx(M, K, x.device)
    assert out.M == M and out.K == K and out.q.is_contiguous() and out.d.is_contiguous() and out.s.is_contiguous()
    nblk = min(8, triton.next_power_of_2(K // 32))
    ssq = min(SSQ_MAX, triton.next_power_of_2(K))
    _quant_x_kernel[(M, triton.cdiv(K, nblk * 32))](
        x, x2, nw, out.q, out.d, out.s, out.g, K, x.stride(0), x2.stride(0), out.q.stride(0), out.d.stride(0),
        out.s.stride(0), out.g.stride(0), float(eps), MODE=mode, NBLK=nblk, SSQ=ssq, G=out.g.shape[1] > 0,
        num_warps=4 if mode == MODE_RMSNORM else 2, **pdl_kw(), **early_kw())
    return out
