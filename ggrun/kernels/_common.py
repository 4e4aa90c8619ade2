"""Shared bits of the Triton kernels: the dp4a helper, f16 fields, the matvec store and the
interpreter switch."""

from __future__ import annotations

import os

import triton
import triton.language as tl


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU (TRITON_INTERPRET=1): no inline PTX there."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_asm() -> bool:
    return not interpreting()


# Off by default: measured on the H200 (benchmarks/gpu_pdl_ab.py, gpu_results.md) it gave +0.7% on
# the 6.7B shape at position 0 and -2% to -6% elsewhere, with identical logits: programs waiting at
# the start hold SM slots the previous kernel's tail could use. Kept for the next step (weights
# loaded before the wait, activations after), which is where PDL should pay.
_PDL = {"on": False, "ok": None}


def set_pdl(on: bool) -> None:
    """Programmatic dependent launch for the decode kernels (off by default, see above)."""
    _PDL["on"] = bool(on)


def use_pdl() -> bool:
    """Launch the decode kernels with programmatic dependent launch (Hopper and later): each
    kernel's programs may start while the previous kernel drains and wait in ``gdc_sync`` for its
    writes (also inside CUDA graphs)."""
    if not _PDL["on"] or interpreting():
        return False
    if _PDL["ok"] is None:
        import torch

        _PDL["ok"] = bool(torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9)
    return _PDL["ok"]


def pdl_kw() -> dict:
    """The launch keywords of a decode kernel: its GDC switch and, with PDL, ``launch_pdl``."""
    return {"GDC": True, "launch_pdl": True} if use_pdl() else {"GDC": False}


@triton.jit
def gdc_sync(GDC: tl.constexpr):
    """With PDL: let the next kernel launch, then wait until the previous kernel's writes are
    visible. Called first in a kernel, before it reads anything a previous kernel wrote."""
    if GDC:
        tl.inline_asm_elementwise("griddepcontrol.launch_dependents; griddepcontrol.wait; mov.u32 $0, 0;", "=r", [],
                                  dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def dp4a(a, b, ASM: tl.constexpr):
    """Σ_i int8(a.byte[i]) * int8(b.byte[i]) over the 4 bytes of int32 words (elementwise,
    broadcasting). On the GPU one ``dp4a.s32.s32``; under the interpreter the same by shifts."""
    a, b = tl.broadcast(a, b)
    c = tl.zeros(a.shape, tl.int32)
    if ASM:
        return tl.inline_asm_elementwise("dp4a.s32.s32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c],
                                         dtype=tl.int32, is_pure=True, pack=1)
    else:
        r = ((a << 24) >> 24) * ((b << 24) >> 24)
        r += ((a << 16) >> 24) * ((b << 16) >> 24)
        r += ((a << 8) >> 24) * ((b << 8) >> 24)
        r += (a >> 24) * (b >> 24)
        return r


@triton.jit
def f16_lo(w):
    """The f16 in the low 16 bits of int32 words, as float32."""
    return (w & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def f16_hi(w):
    """The f16 in the high 16 bits of int32 words, as float32."""
    return ((w >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def kq_scales(w1, w2, w3, jj):
    """Q4_K/Q5_K 6-bit scales and mins: from the 3 packed words of a block ([...]) and the
    64-element group index jj ([..., 4] broadcastable) → (sc_a, sc_b, m_a, m_b) int32 for the
    group's two 32-element sub-blocks 2jj and 2jj+1 (ggml's get_scale_min_k4, 4 at a time)."""
    sc_lo = w1 & 0x3F3F3F3F                                    # sc0..3
    m_lo = w2 & 0x3F3F3F3F                                     # m0..3
    sc_hi = (w3 & 0x0F0F0F0F) | ((w1 >> 2) & 0x30303030)       # sc4..7
    m_hi = ((w3 >> 4) & 0x0F0F0F0F) | ((w2 >> 2) & 0x30303030)  # m4..7
    sel = jj < 2
    scw = tl.where(sel, sc_lo, sc_hi)
    mw = tl.where(sel, m_lo, m_hi)
    sh = (jj % 2) * 16
    return (scw >> sh) & 0xFF, (scw >> (sh + 8)) & 0xFF, (mw >> sh) & 0xFF, (mw >> (sh + 8)) & 0xFF


@triton.jit
def store_y(acc, y_ptr, rows, rmask, M: tl.constexpr, MP: tl.constexpr, stride_ym, ACC: tl.constexpr,
            ATOMIC: tl.constexpr):
    """A matvec program's result acc [MP, BN] into y [M, N] at ``rows``: stored, added to what y
    holds (ACC), or atomically added (ATOMIC: split-K, every K-slice adds its part)."""
    mrow = tl.arange(0, MP)
    ymask = (mrow[:, None] < M) & rmask[None, :]
    yp = y_ptr + mrow[:, None] * stride_ym + rows[None, :]
    if ATOMIC:   # split-K: every K-slice adds its part into y (y = out + W·x, or zeroed first)
        tl.atomic_add(yp, acc, mask=ymask, sem="relaxed")
    else:
        if ACC:
            acc += tl.load(yp, mask=ymask, other=0.0)
        tl.store(yp, acc, mask=ymask)
