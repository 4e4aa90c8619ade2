"""Fused elementwise ops of a prefill batch (many rows): each reads its f32 inputs once and
writes the f16 operand of the next GEMM, instead of a chain of torch kernels and a cast.

- ``rms_norm_f16``: RMSNorm(x)·w per row (f32 sum of squares) → f16 [M, D].
- ``swiglu_f16``: silu(g)·u → f16 [M, F].
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import silu_mul


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, y_ptr, D, stride_x, stride_y, eps, BD: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BD)
    ss = tl.zeros([BD], tl.float32)
    for d0 in range(0, D, BD):                                         # sum of squares of the row
        m = d0 + offs < D
        v = tl.load(x_ptr + row * stride_x + d0 + offs, mask=m, other=0.0)
        ss += v * v
    r = 1.0 / tl.sqrt(tl.sum(ss, 0) / D + eps)
    for d0 in range(0, D, BD):
        m = d0 + offs < D
        v = tl.load(x_ptr + row * stride_x + d0 + offs, mask=m, other=0.0)
        w = tl.load(w_ptr + d0 + offs, mask=m, other=0.0)
        tl.store(y_ptr + row * stride_y + d0 + offs, ((v * r) * w).to(tl.float16), mask=m)


@triton.jit
def _swiglu_kernel(g_ptr, u_ptr, y_ptr, F, stride_g, stride_u, stride_y, BF: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BF + tl.arange(0, BF)
    m = offs < F
    g = tl.load(g_ptr + row * stride_g + offs, mask=m, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + row * stride_u + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * stride_y + offs, silu_mul(g, u).to(tl.float16), mask=m)


def rms_norm_f16(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """x [M, D] f32 (rows contiguous), w [D] f32 → RMSNorm(x)·w as f16 [M, D]."""
    M, D = x.shape
    assert x.stride(1) == 1 and w.is_contiguous()
    y = torch.empty(M, D, dtype=torch.float16, device=x.device)
    BD = min(4096, triton.next_power_of_2(D))
    _rms_norm_kernel[(M,)](x, w, y, D, x.stride(0), y.stride(0), eps, BD=BD, num_warps=8)
    return y


def swiglu_f16(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """g, u [M, F] (f32 or f16, rows contiguous) → silu(g)·u as f16 [M, F]."""
    M, F = g.shape
    assert g.stride(1) == 1 and u.stride(1) == 1 and u.shape == g.shape
    y = torch.empty(M, F, dtype=torch.float16, device=g.device)
    BF = 1024
    _swiglu_kernel[(M, triton.cdiv(F, BF))](g, u, y, F, g.stride(0), u.stride(0), y.stride(0), BF=BF, num_warps=4)
    return y
