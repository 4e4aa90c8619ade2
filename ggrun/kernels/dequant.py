"""Dequantize packed rows to f16/f32: the prefill path (then cuBLAS) and embedding lookups.

One program decodes BB blocks of one row (a row of ``ids`` when given), element by
element; each element finds its bits by arithmetic on its index (the words are re-read
from L1, so the kernel is bound by the bytes it writes). The float operations are those of
ggml's dequantize_row_* (ggrun.quants), so the f32 output is bit-identical to the reference
(where the compiler doesn't contract a multiply and an add into an FMA).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import f16_hi, f16_lo, gdc_sync, interpreting, kq_scales, pdl_kw
from .layout import LAYOUTS, Packed


@triton.jit
def _word(w_ptr, row, stride_w, bi, i, WPB: tl.constexpr, IL: tl.constexpr):
    """Address of word i of block bi of ``row``: row-major (IL = 0) or row-interleaved (layout.py)."""
    if IL:
        return w_ptr + (row // IL) * stride_w + (bi * (WPB // 4) + i // 4) * (IL * 4) + (row % IL) * 4 + i % 4
    else:
        return w_ptr + row * stride_w + bi * WPB + i


@triton.jit
def _field(d_ptr, row, stride_d, bi, IL: tl.constexpr):
    """Address of block bi's d-plane entry (one f16, or one int32 of two) of ``row``."""
    if IL:
        return d_ptr + (row // IL) * stride_d + bi * IL + row % IL
    else:
        return d_ptr + row * stride_d + bi


@triton.jit
def _dequant_kernel(w_ptr, d_ptr, ids_ptr, y_ptr, R, NB, stride_w, stride_d, stride_y,
                    TYPE: tl.constexpr, BR: tl.constexpr, BB: tl.constexpr, HAS_IDS: tl.constexpr, IL: tl.constexpr,
                    GDC: tl.constexpr):
    gdc_sync(GDC)
    r = tl.program_id(0) * BR + tl.arange(0, BR)[:, None, None]                  # [BR, 1, 1]
    rmask = r < R
    if HAS_IDS:
        row = tl.load(ids_ptr + r, mask=rmask, other=0).to(tl.int64)
    else:
        row = r.to(tl.int64)
    bi = tl.program_id(1) * BB + tl.arange(0, BB)[None, :, None]                # [1, BB, 1]
    bmask = (bi < NB) & rmask
    if TYPE == 12 or TYPE == 13:  # Q4_K, Q5_K
        WPB: tl.constexpr = 44 if TYPE == 13 else 36
        QOFF: tl.constexpr = 12 if TYPE == 13 else 4
        e = tl.arange(0, 256)[None, None, :]                                          # [1, 256]
        jj = e // 64
        hi = (e // 32) % 2
        l = e % 32
        q = tl.load(_word(w_ptr, row, stride_w, bi, QOFF + 8 * jj + l // 4, WPB, IL), mask=bmask, other=0)   # [BB, 256]
        q = (q >> (8 * (l % 4) + 4 * hi)) & 0xF
        if TYPE == 13:
            qh = tl.load(_word(w_ptr, row, stride_w, bi, 4 + l // 4, WPB, IL), mask=bmask, other=0)
            q |= ((qh >> (8 * (l % 4) + 2 * jj + hi)) & 1) << 4
        w0 = tl.load(_word(w_ptr, row, stride_w, bi, 0, WPB, IL), mask=bmask, other=0)
        sca, scb, mna, mnb = kq_scales(tl.load(_word(w_ptr, row, stride_w, bi, 1, WPB, IL), mask=bmask, other=0),
                                       tl.load(_word(w_ptr, row, stride_w, bi, 2, WPB, IL), mask=bmask, other=0),
                                       tl.load(_word(w_ptr, row, stride_w, bi, 3, WPB, IL), mask=bmask, other=0), jj)
        sc = tl.where(hi == 0, sca, scb).to(tl.float32)
        mn = tl.where(hi == 0, mna, mnb).to(tl.float32)
        y = (f16_lo(w0) * sc) * q.to(tl.float32) - f16_hi(w0) * mn
        NE: tl.constexpr = 256
    elif TYPE == 14:  # Q6_K
        e = tl.arange(0, 256)[None, None, :]
        h = e // 128
        g = (e % 128) // 32
        l = e % 32
        ql = tl.load(_word(w_ptr, row, stride_w, bi, (64 * h + l + 32 * (g % 2)) // 4, 52, IL), mask=bmask, other=0)
        ql = (ql >> (8 * (l % 4) + 4 * (g // 2))) & 0xF
        qh = tl.load(_word(w_ptr, row, stride_w, bi, 32 + (32 * h + l) // 4, 52, IL), mask=bmask, other=0)
        qh = (qh >> (8 * (l % 4) + 2 * g)) & 3
        q = (ql | (qh << 4)) - 32
        si = 8 * h + l // 16 + 2 * g
        sc = tl.load(_word(w_ptr, row, stride_w, bi, 48 + si // 4, 52, IL), mask=bmask, other=0)
        sc = (sc >> (8 * (si % 4))) & 0xFF
        sc = (sc ^ 0x80) - 0x80
        d = tl.load(_field(d_ptr, row, stride_d, bi, IL), mask=bmask, other=0.0).to(tl.float32)
        y = (d * sc.to(tl.float32)) * q.to(tl.float32)
        NE: tl.constexpr = 256
    elif TYPE == 8:  # Q8_0
        e = tl.arange(0, 32)[None, None, :]
        q = tl.load(w_ptr + row * stride_w + bi * 8 + e // 4, mask=bmask, other=0)
        q = (q << (24 - 8 * (e % 4))) >> 24
        d = tl.load(d_ptr + row * stride_d + bi, mask=bmask, other=0.0).to(tl.float32)
        y = d * q.to(tl.float32)
        NE: tl.constexpr = 32
    elif TYPE == 10:  # Q2_K: words scales[16] · qs[64]; d plane d, dmin (int32 words)
        e = tl.arange(0, 256)[None, None, :]
        h = e // 128
        j = (e % 128) // 32
        l = e % 32
        base = w_ptr + row * stride_w + bi * 20
        q = tl.load(base + 4 + (32 * h + l) // 4, mask=bmask, other=0)
        q = (q >> (8 * (l % 4) + 2 * j)) & 3
        si = e // 16                                                            # sub-block 8h + 2j + l/16
        sc = (tl.load(base + si // 4, mask=bmask, other=0) >> (8 * (si % 4))) & 0xFF
        dm = tl.load(d_ptr + row * stride_d + bi, mask=bmask, other=0)
        y = (f16_lo(dm) * (sc & 0xF).to(tl.float32)) * q.to(tl.float32) - f16_hi(dm) * (sc >> 4).to(tl.float32)
        NE: tl.constexpr = 256
    elif TYPE == 11:  # Q3_K: words hmask[32] · qs[64] · scales[12]; d plane d
        e = tl.arange(0, 256)[None, None, :]
        h = e // 128
        j = (e % 128) // 32
        l = e % 32
        base = w_ptr + row * stride_w + bi * 27
        q = tl.load(base + 8 + (32 * h + l) // 4, mask=bmask, other=0)
        q = (q >> (8 * (l % 4) + 2 * j)) & 3
        hb = (tl.load(base + l // 4, mask=bmask, other=0) >> (8 * (l % 4) + 4 * h + j)) & 1
        q = q - 4 * (1 - hb)
        si = e // 16
        lo = (tl.load(base + 24 + (si % 8) // 4, mask=bmask, other=0) >> (8 * (si % 4) + 4 * (si // 8))) & 0xF
        hi = (tl.load(base + 26, mask=bmask, other=0) >> (8 * (si % 4) + 2 * (si // 4))) & 3
        d = tl.load(d_ptr + row * stride_d + bi, mask=bmask, other=0.0).to(tl.float32)
        y = (d * ((lo | (hi << 4)) - 32).to(tl.float32)) * q.to(tl.float32)
        NE: tl.constexpr = 256
    elif TYPE == 2 or TYPE == 3:  # Q4_0, Q4_1 (d plane as int32 words: d, m)
        e = tl.arange(0, 32)[None, None, :]
        q = tl.load(w_ptr + row * stride_w + bi * 4 + (e % 16) // 4, mask=bmask, other=0)
        q = (q >> (8 * (e % 4) + 4 * (e // 16))) & 0xF
        if TYPE == 2:
            d = tl.load(d_ptr + row * stride_d + bi, mask=bmask, other=0.0).to(tl.float32)
            y = d * (q - 8).to(tl.float32)
        else:
            dm = tl.load(d_ptr + row * stride_d + bi, mask=bmask, other=0)
            y = q.to(tl.float32) * f16_lo(dm) + f16_hi(dm)
        NE: tl.constexpr = 32
    else:  # Q5_0, Q5_1: words qh[4] · qs[16] (d plane: d, or d, m as int32 words)
        e = tl.arange(0, 32)[None, None, :]
        base = w_ptr + row * stride_w + bi * 5
        q = tl.load(base + 1 + (e % 16) // 4, mask=bmask, other=0)
        q = (q >> (8 * (e % 4) + 4 * (e // 16))) & 0xF
        q |= ((tl.load(base, mask=bmask, other=0) >> e) & 1) << 4
        if TYPE == 6:
            d = tl.load(d_ptr + row * stride_d + bi, mask=bmask, other=0.0).to(tl.float32)
            y = (q - 16).to(tl.float32) * d
        else:
            dm = tl.load(d_ptr + row * stride_d + bi, mask=bmask, other=0)
            y = q.to(tl.float32) * f16_lo(dm) + f16_hi(dm)
        NE: tl.constexpr = 32
    tl.store(y_ptr + r.to(tl.int64) * stride_y + bi * NE + e, y.to(y_ptr.dtype.element_ty), mask=bmask)


def dequantize(p: Packed, ids: torch.Tensor | None = None, dtype: torch.dtype = torch.float16,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Packed [N, K] → dense [N, K] (or [len(ids), K]: the rows ``ids``, an embedding lookup).
    Only the row lookups (the decode step's embedding) launch with PDL: a whole matrix is prefill's,
    dequantized one matrix ahead on a side stream beside the GEMMs, where a next dequantization
    launched early would hold SMs while it waits (PDL on here measured pp512 -3% on the 33B shape)."""
    p.check()
    t = p.ggml_type
    bs = LAYOUTS[t][0]
    NB = p.n_blocks
    R = p.n_out if ids is None else ids.numel()
    if ids is not None:
        ids = ids.reshape(-1).to(device=p.w.device)
        assert ids.dtype in (torch.int32, torch.int64)
    if out is None:
        out = torch.empty(R, p.n_in, dtype=dtype, device=p.w.device)
    assert out.shape == (R, p.n_in) and out.stride(1) == 1 and out.dtype in (torch.float16, torch.bfloat16, torch.float32)
    if R == 0:
        return out
    bb, br = (4 if bs == 256 else 32), 1
    if p.il and ids is None:     # interleaved: 4 neighbouring rows per program read whole 32-byte sectors
        bb, br = 1, 4
    if interpreting():  # few programs: the interpreter runs them one by one
        bb, br = triton.next_power_of_2(NB), min(64, triton.next_power_of_2(R))
    d = p.d_words if p.d is not None else p.w
    grid = (triton.cdiv(R, br), triton.cdiv(NB, bb))
    _dequant_kernel[grid](p.w, d, ids if ids is not None else p.w, out, R, NB, p.w.stride(0),
                          d.stride(0), out.stride(0), TYPE=t, BR=br, BB=bb, HAS_IDS=ids is not None, IL=p.il,
                          num_warps=4, **(pdl_kw() if ids is not None else {"GDC": 0}))
    return out
