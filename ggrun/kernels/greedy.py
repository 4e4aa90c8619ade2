"""The greedy decoder's next step in one launch: token = argmax(logits) (the first of equal
maxima, as torch.argmax), position + 1. In a decode graph it replaces three torch kernels
(argmax, the copy into the token buffer, the position's add), none of which could start before
the previous one ended."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import gdc_sync, pdl_kw

MAX_BLOCK = 32768     # logits per step of the one program (the whole of a 32K vocabulary at once)


@triton.jit
def _argmax_next_kernel(x_ptr, tok_ptr, pos_ptr, V, BV: tl.constexpr, GDC: tl.constexpr):
    gdc_sync(GDC)
    best_v = tl.full([], float("-inf"), tl.float32)
    best_i = tl.full([], 0, tl.int32)
    for v0 in range(0, V, BV):
        offs = v0 + tl.arange(0, BV)
        x = tl.load(x_ptr + offs, mask=offs < V, other=float("-inf"))
        m = tl.max(x, 0)
        i = tl.argmax(x, 0, tie_break_left=True) + v0
        take = m > best_v                      # strictly: an earlier block keeps its equal maximum
        best_i = tl.where(take, i, best_i)
        best_v = tl.where(take, m, best_v)
    tl.store(tok_ptr, best_i.to(tl.int64))
    tl.store(pos_ptr, tl.load(pos_ptr) + 1)


def argmax_next(logits: torch.Tensor, tok: torch.Tensor, pos: torch.Tensor, block: int | None = None) -> None:
    """logits [V] f32 (contiguous) → tok [1] int64 = argmax (the first index of the maximum;
    logits without NaN); pos [1] (int32) += 1. ``block``: logits per step (a power of 2; default
    all of them, up to ``MAX_BLOCK``)."""
    assert logits.dim() == 1 and logits.is_contiguous() and logits.dtype == torch.float32
    assert tok.numel() == 1 and tok.dtype == torch.int64 and pos.numel() == 1 and pos.dtype == torch.int32
    V = logits.numel()
    bv = block or min(MAX_BLOCK, triton.next_power_of_2(V))
    _argmax_next_kernel[(1,)](logits, tok, pos, V, BV=bv, num_warps=32 if bv >= 16384 else 8, **pdl_kw())
