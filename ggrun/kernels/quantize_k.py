"""Fused Triton quantizers for the k-quants: f32 super-blocks → Q2_K … Q6_K blocks, bit-exact.

One kernel per type does the whole of ``quantize_row_q*_K_ref`` (ggml-quants.c) for SB
super-blocks per program: the per-group scale search, the super-block scales, the
re-quantization with the rounded scales and the bit packing; it reads each input value
once and writes each output byte once.

Layout: the groups of SB super-blocks are the vector lanes, a [SB, G] tensor (G groups of
n values per super-block, one group per thread by default), and a group's n values are a
tuple of n such tensors (value i of every group), so ggml's sequential loops
``for (i = 0; i < n; ++i) s += …`` become n adds in the same order, per lane.  The tile
[SB, G, n] is read with one coalesced load and split into the tuple (tl.split, in
registers); the final levels are joined back into a tile (tl.join) and packed with
reshapes and integer sums across the groups of a super-block, one store per field.  The
super-block steps (largest scale, 6/8-bit scales) reduce over the G lanes (axis 1).

Exactness (the same float32 operations as the C code and as :mod:`ggrun.quants.search`):
every kernel is compiled with ``enable_fp_fusion=False`` (no mul+add → fma), divides with
``tl.div_rn`` and takes roots with ``tl.sqrt_rn`` (IEEE, correctly rounded, where ``/``
and ``tl.sqrt`` are approximate on the GPU), keeps C's evaluation order in every
expression (``w*x[i]*l`` is ``(w*x)*l``), computes nearest_int() with ggml's own bit trick
(exact for any argument) and rounds the f16 scales with round-to-nearest-even.  The float
constants of the search loops (``(rmin + rdelta*is + nmax)``, ``-(nmax + 0.1f*is)``) are
computed on the host in float32 like the torch code and read from a small table.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import triton
import triton.language as tl

from ._common import interpreting

QK_K = 256

# ----------------------------------------------------------------------------------------
# ggml's float idioms
# ----------------------------------------------------------------------------------------


@triton.jit
def _nearest_int(v):
    """ggml's nearest_int(): bits of v + 1.5*2**23, low 23 bits - 2**22 (int32, any v).

    For a NaN the C code reads the NaN's payload: 0 for x86's default NaN (0xFFC00000) and a
    quieted input NaN; a GPU's arithmetic NaN is 0x7FFFFFFF, so NaN → 0 explicitly (NaNs
    arise from finite input too, e.g. inf*0 for a group of subnormal range)."""
    r = ((v + 12582912.0).to(tl.int32, bitcast=True) & 0x7FFFFF) - 0x400000
    return tl.where(v != v, 0, r)


@triton.jit
def _lvl(v, LO: tl.constexpr, HI: tl.constexpr):
    """``MAX(LO, MIN(HI, nearest_int(v)))`` (int32)."""
    return tl.minimum(tl.maximum(_nearest_int(v), LO), HI)


@triton.jit
def _f16_bits(v):
    """GGML_FP32_TO_FP16 as the 16 bits in an int32 (round to nearest even; NaN → sign|0x7E00)."""
    h = v.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    nan = ((v.to(tl.int32, bitcast=True) >> 16) & 0x8000) | 0x7E00
    return tl.where(v != v, nan, h)


@triton.jit
def _f16_val(bits):
    """The f16 whose bits are in the low half of an int32, as float32."""
    return bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _safe(v, ok):
    """v where ok, else 1 (a harmless divisor for lanes whose result is masked away)."""
    return tl.where(ok, v, 1.0)


# ----------------------------------------------------------------------------------------
# Tiles [SB, G, n] <-> tuples of n lanes [SB, G]
# ----------------------------------------------------------------------------------------


@triton.jit
def _split_bits(t, LOG2N: tl.constexpr):
    """t [A, B, 2, …, 2] (LOG2N axes of 2, the last one the top bit of i) → the N = 2**LOG2N
    tensors [A, B] in order of i: split in halves by the top bit, LOG2N times."""
    cols = (t,)
    for _ in tl.static_range(LOG2N):
        nc = ()
        for c in tl.static_range(len(cols)):
            lo, hi = tl.split(cols[c])
            nc = nc + (lo, hi)
        cols = nc
    return cols


@triton.jit
def _load_groups(x_ptr, base, mask, N: tl.constexpr):
    """The groups as a tuple of N tensors [SB, G] (value i of every group), from one load of the
    tile [SB, G, N].  base: [SB, G] int64 offsets of the groups; mask: [SB, G].  x_ptr: f32 (or
    f16 / bf16, widened exactly)."""
    t = tl.load(x_ptr + base[:, :, None] + tl.arange(0, N)[None, None, :], mask=mask[:, :, None], other=0.0)
    t = t.to(tl.float32)                                   # f16 / bf16 input: exact
    A: tl.constexpr = base.shape[0]
    B: tl.constexpr = base.shape[1]
    if N == 32:   # the axes of i's bits, top bit last
        cols = _split_bits(tl.permute(tl.reshape(t, (A, B, 2, 2, 2, 2, 2)), (0, 1, 6, 5, 4, 3, 2)), 5)
    else:
        cols = _split_bits(tl.permute(tl.reshape(t, (A, B, 2, 2, 2, 2)), (0, 1, 5, 4, 3, 2)), 4)
    return cols


@triton.jit
def _stack(cols, N: tl.constexpr):
    """N (16 or 32) tensors [A, B] → [A, B, N] with [..., i] = cols[i]: joins pairs (bit 0 of
    i first), then puts the bit axes in order (the inverse of :func:`_load_groups`' split)."""
    A: tl.constexpr = cols[0].shape[0]
    B: tl.constexpr = cols[0].shape[1]
    LOG2N: tl.constexpr = 5 if N == 32 else 4
    for _ in tl.static_range(LOG2N):
        nc = ()
        for c in tl.static_range(len(cols) // 2):
            nc = nc + (tl.join(cols[2 * c], cols[2 * c + 1]),)
        cols = nc
    if N == 32:
        t = tl.permute(cols[0], (0, 1, 6, 5, 4, 3, 2))
    else:
        t = tl.permute(cols[0], (0, 1, 5, 4, 3, 2))
    return tl.reshape(t, (A, B, N))


@triton.jit
def _qkx2(xs, ws, tab_ptr, N: tl.constexpr, NMAX: tl.constexpr, NSTEP: tl.constexpr, MAD: tl.constexpr):
    """make_qkx2_quants for groups xs / weights ws (tuples of N [SB, G] tensors).

    tab_ptr[is] = (rmin + rdelta*is + nmax) in float32.  Returns (scale, the_min, iscale,
    min, degenerate): the levels C keeps are ``_qkx2_level(x, iscale, min, degenerate)``
    (the pair that produced them is kept instead of the levels, as in search.py).
    """
    mn = xs[0]
    mx = xs[0]
    sum_w = ws[0]
    sum_x = sum_w * xs[0]
    for i in tl.static_range(1, N):
        mn = tl.where(xs[i] < mn, xs[i], mn)
        mx = tl.where(xs[i] > mx, xs[i], mx)
        sum_w = sum_w + ws[i]
        sum_x = sum_x + ws[i] * xs[i]
    mn = tl.where(mn > 0, 0.0, mn)
    degen = mx == mn
    mn0 = mn
    iscale = tl.div_rn(tl.full(mn.shape, NMAX, tl.float32), _safe(mx - mn, ~degen))  # nmax/(max - min)
    scale = tl.div_rn(tl.full(mn.shape, 1.0, tl.float32), iscale)
    best = tl.zeros(mn.shape, tl.float32)
    for i in tl.static_range(N):
        l = _lvl(iscale * (xs[i] - mn), 0, NMAX).to(tl.float32)
        diff = scale * l + mn - xs[i]
        diff = tl.abs(diff) if MAD else diff * diff
        best = best + ws[i] * diff
    l_is = iscale
    l_mn = mn
    for step in range(NSTEP + 1):
        iscale = tl.div_rn(tl.load(tab_ptr + step) + tl.zeros(mn.shape, tl.float32), _safe(mx - mn, ~degen))
        sum_l = tl.zeros(mn.shape, tl.float32)
        sum_l2 = tl.zeros(mn.shape, tl.float32)
        sum_xl = tl.zeros(mn.shape, tl.float32)
        ls = ()
        for i in tl.static_range(N):
            l = _lvl(iscale * (xs[i] - mn), 0, NMAX).to(tl.float32)
            ls = ls + (l,)
            wl = ws[i] * l
            sum_l = sum_l + wl
            sum_l2 = sum_l2 + wl * l
            sum_xl = sum_xl + wl * xs[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        this_scale = tl.div_rn(sum_w * sum_xl - sum_x * sum_l, _safe(D, ok))
        this_min = tl.div_rn(sum_l2 * sum_x - sum_l * sum_xl, _safe(D, ok))
        pos = this_min > 0
        this_min = tl.where(pos, 0.0, this_min)
        this_scale = tl.where(pos, tl.div_rn(sum_xl, _safe(sum_l2, pos & ok)), this_scale)
        cur = tl.zeros(mn.shape, tl.float32)
        for i in tl.static_range(N):
            diff = this_scale * ls[i] + this_min - xs[i]
            diff = tl.abs(diff) if MAD else diff * diff
            cur = cur + ws[i] * diff
        upd = ok & (cur < best)
        l_is = tl.where(upd, iscale, l_is)
        l_mn = tl.where(upd, mn, l_mn)
        best = tl.where(upd, cur, best)
        scale = tl.where(upd, this_scale, scale)
        mn = tl.where(upd, this_min, mn)
    return tl.where(degen, 0.0, scale), tl.where(degen, -mn0, -mn), l_is, l_mn, degen


@triton.jit
def _qkx2_level(x, l_is, l_mn, degen, NMAX: tl.constexpr):
    """The level make_qkx2_quants leaves for value x (int32)."""
    return tl.where(degen, 0, _lvl(l_is * (x - l_mn), 0, NMAX))


@triton.jit
def _absmax(xs, N: tl.constexpr):
    """``amax = max = 0; for (i…) if (amax < |x[i]|) { amax = |x[i]|; max = x[i]; }``"""
    amax = tl.zeros(xs[0].shape, tl.float32)
    mx = tl.zeros(xs[0].shape, tl.float32)
    for i in tl.static_range(N):
        ax = tl.abs(xs[i])
        c = ax > amax
        mx = tl.where(c, xs[i], mx)
        amax = tl.where(c, ax, amax)
    return amax, mx


@triton.jit
def _qx_rmse1(xs, tab_ptr, N: tl.constexpr, NMAX: tl.constexpr):
    """make_qx_quants(n, nmax, x, L, rmse_type=1, NULL) for groups xs (tuple of N [SB, G]).

    tab_ptr[k] = -(nmax + 0.1f*is) for is = -9 … 9 without 0.  Returns (scale, iscale,
    zero): the levels are ``_qx_level(x, iscale, zero)``.
    """
    amax, mx = _absmax(xs, N)
    zero = amax < 1e-15                                    # GROUP_MAX_EPS
    mx = tl.where(zero, 1.0, mx)
    l_is = tl.div_rn(tl.full(mx.shape, -NMAX, tl.float32), mx)   # -nmax / max
    sumlx = tl.zeros(mx.shape, tl.float32)
    suml2 = tl.zeros(mx.shape, tl.float32)
    for i in tl.static_range(N):
        l = _lvl(l_is * xs[i], -NMAX, NMAX - 1).to(tl.float32)
        w = xs[i] * xs[i]
        sumlx = sumlx + w * xs[i] * l
        suml2 = suml2 + w * l * l
    nz = suml2 != 0
    scale = tl.where(nz, tl.div_rn(sumlx, _safe(suml2, nz)), 0.0)
    best = scale * sumlx
    for k in range(18):
        iscale = tl.div_rn(tl.load(tab_ptr + k) + tl.zeros(mx.shape, tl.float32), mx)
        sumlx = tl.zeros(mx.shape, tl.float32)
        suml2 = tl.zeros(mx.shape, tl.float32)
        for i in tl.static_range(N):
            l = _lvl(iscale * xs[i], -NMAX, NMAX - 1).to(tl.float32)
            w = xs[i] * xs[i]
            sumlx = sumlx + w * xs[i] * l
            suml2 = suml2 + w * l * l
        upd = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        l_is = tl.where(upd, iscale, l_is)
        scale = tl.where(upd, tl.div_rn(sumlx, _safe(suml2, upd)), scale)
        best = tl.where(upd, scale * sumlx, best)
    return tl.where(zero, 0.0, scale), l_is, zero


@triton.jit
def _qx_level(x, l_is, zero, NMAX: tl.constexpr):
    """The level (in [0, 2*nmax-1]; 0 for an all-zero group) make_qx_quants leaves for x."""
    return tl.where(zero, 0, _lvl(l_is * x, -NMAX, NMAX - 1) + NMAX)


@triton.jit
def _q3_rmse(xs, N: tl.constexpr, NMAX: tl.constexpr):
    """make_q3_quants(n, nmax, x, L, do_rmse=true) for groups xs (tuple of N [SB, G]).

    Returns (scale, levels): levels a tuple of N int32 [SB, G] in [0, 2*nmax-1] (0 for an
    all-zero group).  All five passes run (a pass that changes nothing changes nothing after).
    """
    amax, mx = _absmax(xs, N)
    zero = amax < 1e-15
    mx = tl.where(zero, 1.0, mx)
    iscale = tl.div_rn(tl.full(mx.shape, -NMAX, tl.float32), mx)
    L = ()
    sumlx = tl.zeros(mx.shape, tl.float32)
    suml2 = tl.zeros(mx.shape, tl.float32)
    for i in tl.static_range(N):
        l = _lvl(iscale * xs[i], -NMAX, NMAX - 1).to(tl.float32)
        L = L + (l,)
        w = xs[i] * xs[i]
        sumlx = sumlx + w * xs[i] * l
        suml2 = suml2 + w * l * l
    for _ in tl.static_range(5):
        L2 = ()
        for i in tl.static_range(N):
            w = xs[i] * xs[i]
            li = L[i]
            slx = sumlx - w * xs[i] * li
            pos = slx > 0
            sl2 = suml2 - w * li * li
            new_l = _lvl(tl.div_rn(xs[i] * sl2, _safe(slx, pos)), -NMAX, NMAX - 1).to(tl.float32)
            slx = slx + w * xs[i] * new_l
            sl2 = sl2 + w * new_l * new_l
            acc = pos & (new_l != li) & (sl2 > 0) & (slx * slx * suml2 > sumlx * sumlx * sl2)
            L2 = L2 + (tl.where(acc, new_l, li),)
            sumlx = tl.where(acc, slx, sumlx)
            suml2 = tl.where(acc, sl2, suml2)
        L = L2
    pos = suml2 > 0
    scale = tl.where(pos & ~zero, tl.div_rn(sumlx, _safe(suml2, pos)), 0.0)
    out = ()
    for i in tl.static_range(N):
        out = out + (tl.where(zero, 0, L[i].to(tl.int32) + NMAX),)
    return scale, out


@triton.jit
def _first_absmax(s, G: tl.constexpr):
    """Over the G lanes of a super-block ([SB, G] → [SB]): ``amax = max = 0; for (j…) if
    (fabsf(s[j]) > amax) { amax = fabsf(s[j]); max = s[j]; }``."""
    sa = tl.abs(s)
    sa = tl.where(sa == sa, sa, 0.0)                       # a NaN scale never wins
    amax = tl.max(sa, axis=1)
    g = tl.arange(0, G)[None, :]
    first = tl.min(tl.where(sa == amax[:, None], g, G), axis=1)
    mx = tl.max(tl.where(g == first[:, None], s, -float("inf")), axis=1)
    return amax, tl.where(amax > 0, mx, 0.0)


@triton.jit
def _pos_max(s):
    """``m = 0; for (j…) if (s[j] > m) m = s[j];`` over axis 1 (NaN never wins)."""
    return tl.max(tl.where(s > 0, s, 0.0), axis=1)


@triton.jit
def _crumbs(q, SB: tl.constexpr):
    """2-bit levels [SB, 16 groups, 16] → qs [SB, 64]: qs[32h + 16s + i] = L[128h + 16s + i] |
    L[… + 32] << 2 | L[… + 64] << 4 | L[… + 96] << 6, element 128h + 32k + 16s + i being value
    i of group 8h + 2k + s."""
    k4 = tl.arange(0, 4)[None, None, :, None, None]
    return tl.reshape(tl.sum(tl.reshape(q, (SB, 2, 4, 2, 16)) << (k4 * 2), axis=2), (SB, 64))


@triton.jit
def _f16_pair_bytes(a, b):
    """Two f16 bit patterns [SB] → their 4 little-endian bytes [SB, 4]."""
    k = tl.arange(0, 4)[None, :]
    v = tl.where(k < 2, a[:, None], b[:, None])
    return tl.where(k % 2 == 0, v & 0xFF, (v >> 8) & 0xFF)


# ----------------------------------------------------------------------------------------
# Kernels: one program = SB super-blocks; lanes [SB, G] = the groups
# ----------------------------------------------------------------------------------------


@triton.jit
def _lanes(N_SB, SB: tl.constexpr, G: tl.constexpr, TS: tl.constexpr):
    """(input offsets of the groups [SB, G] int64, output block offsets [SB], valid [SB])."""
    sb = tl.program_id(0).to(tl.int64) * SB + tl.arange(0, SB)
    g = tl.arange(0, G)
    return sb[:, None] * 256 + g[None, :] * (256 // G), sb * TS, sb < N_SB


@triton.jit
def _q45_k_kernel(x_ptr, y_ptr, tab_ptr, N_SB, SB: tl.constexpr, Q5: tl.constexpr):
    """Q4_K (144 bytes: d, dmin, scales[12], qs[128]) or Q5_K (176: … qh[32], qs[128])."""
    NMAX: tl.constexpr = 31 if Q5 else 15
    NSTEP: tl.constexpr = 15 if Q5 else 20
    TS: tl.constexpr = 176 if Q5 else 144
    base, yb, valid = _lanes(N_SB, SB, 8, TS)        # base [SB, 8]
    vm = valid[:, None]
    xs = _load_groups(x_ptr, base, vm, 32)                 # 32 x [SB, 8]
    sum_x2 = tl.zeros(base.shape, tl.float32)
    for i in tl.static_range(32):
        sum_x2 = sum_x2 + xs[i] * xs[i]
    av_x = tl.sqrt_rn(tl.div_rn(sum_x2, tl.full(base.shape, 32.0, tl.float32)))
    ws = ()
    for i in tl.static_range(32):
        ws = ws + (av_x + tl.abs(xs[i]),)
    scales, mins, l_is, l_mn, degen = _qkx2(xs, ws, tab_ptr, 32, NMAX, NSTEP, False)
    # super-block: 6-bit scales and mins against the largest ones ([SB])
    max_scale = _pos_max(scales)
    max_min = _pos_max(mins)
    c63 = tl.full(max_scale.shape, 63.0, tl.float32)
    inv_scale = tl.where(max_scale > 0, tl.div_rn(c63, _safe(max_scale, max_scale > 0)), 0.0)
    inv_min = tl.where(max_min > 0, tl.div_rn(c63, _safe(max_min, max_min > 0)), 0.0)
    ls = tl.minimum(_nearest_int(inv_scale[:, None] * scales) & 0xFF, 63)   # [SB, 8]
    lm = tl.minimum(_nearest_int(inv_min[:, None] * mins) & 0xFF, 63)
    d = _f16_bits(tl.div_rn(max_scale, c63))
    dmin = _f16_bits(tl.div_rn(max_min, c63))
    dq = _f16_val(d)[:, None] * ls.to(tl.float32)          # [SB, 8]
    dmq = _f16_val(dmin)[:, None] * lm.to(tl.float32)
    # bytes 0-15: d, dmin, scales[12] = 3 x [SB, 4] from [SB, 2 (j < 4, j >= 4), 4]
    h = tl.arange(0, 2)[None, :, None]
    ls3 = tl.reshape(ls, (SB, 2, 4))
    lm3 = tl.reshape(lm, (SB, 2, 4))
    b0 = tl.sum(tl.where(h == 0, ls3, (ls3 >> 4) << 6), axis=1)
    b1 = tl.sum(tl.where(h == 0, lm3, (lm3 >> 4) << 6), axis=1)
    b2 = tl.sum(tl.where(h == 1, (ls3 & 0xF) | ((lm3 & 0xF) << 4), 0), axis=1)
    head = tl.join(tl.join(_f16_pair_bytes(d, dmin), b0), tl.join(b1, b2))   # [SB, 4, piece & 1, piece >> 1]
    head = tl.reshape(tl.permute(head, (0, 3, 2, 1)), (SB, 16))
    c16 = tl.arange(0, 16)[None, :]
    tl.store(y_ptr + yb[:, None] + c16, head.to(tl.uint8), mask=vm)
    # levels with the rounded scales (where d != 0), then as a tile for the packing
    nz = dq != 0
    dqs = _safe(dq, nz)
    qt = ()
    for i in tl.static_range(32):
        lr = _lvl(tl.div_rn(xs[i] + dmq, dqs), 0, NMAX)
        qt = qt + (tl.where(nz, lr, _qkx2_level(xs[i], l_is, l_mn, degen, NMAX)),)
    q = _stack(qt, 32)                                     # [SB, 8, 32]
    i32 = tl.arange(0, 32)[None, :]
    QS: tl.constexpr = 48 if Q5 else 16
    if Q5:   # qh[i] bit j = bit 4 of L[32j + i]
        qh = tl.sum(((q >> 4) & 1) << tl.arange(0, 8)[None, :, None], axis=1)   # [SB, 32]
        tl.store(y_ptr + yb[:, None] + 16 + i32, qh.to(tl.uint8), mask=vm)
    # qs[32c + i] = L[64c + i] | L[64c + 32 + i] << 4: [SB, 4 (c), 2, 32]
    qs = tl.sum(tl.reshape(q & 0xF, (SB, 4, 2, 32)) << (tl.arange(0, 2) * 4)[None, None, :, None], axis=2)
    off = yb[:, None, None] + QS + tl.arange(0, 4)[None, :, None] * 32 + i32[:, None, :]
    tl.store(y_ptr + off, qs.to(tl.uint8), mask=valid[:, None, None])


@triton.jit
def _q6_k_kernel(x_ptr, y_ptr, tab_ptr, N_SB, SB: tl.constexpr):
    """Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d)."""
    base, yb, valid = _lanes(N_SB, SB, 16, 210)       # base [SB, 16]
    vm = valid[:, None]
    xs = _load_groups(x_ptr, base, vm, 16)                 # 16 x [SB, 16]
    scales, l_is, zero = _qx_rmse1(xs, tab_ptr, 16, 32)
    max_abs, max_scale = _first_absmax(scales, 16)        # [SB]
    empty = max_abs < 1e-15                                # an empty block is all zeros
    iscale = tl.div_rn(tl.full(max_scale.shape, -128.0, tl.float32), _safe(max_scale, ~empty))
    d = tl.where(empty, 0, _f16_bits(tl.div_rn(tl.full(max_scale.shape, 1.0, tl.float32), iscale)))
    sc = tl.minimum(_nearest_int(iscale[:, None] * scales), 127)
    sc = tl.where(empty[:, None], 0, ((sc + 128) & 0xFF) - 128)           # into int8_t
    dq = _f16_val(d)[:, None] * sc.to(tl.float32)          # [SB, 16]
    c16 = tl.arange(0, 16)[None, :]
    tl.store(y_ptr + yb[:, None] + 192 + c16, (sc & 0xFF).to(tl.uint8), mask=vm)
    tl.store(y_ptr + yb[:, None] + 208 + tl.arange(0, 2)[None, :],
             tl.where(tl.arange(0, 2)[None, :] == 0, d[:, None] & 0xFF, d[:, None] >> 8).to(tl.uint8), mask=vm)
    nz = dq != 0
    dqs = _safe(dq, nz)
    qt = ()
    for i in tl.static_range(16):
        lr = _lvl(tl.div_rn(xs[i], dqs), -32, 31) + 32
        qt = qt + (tl.where(nz, lr, _qx_level(xs[i], l_is, zero, 32)),)
    q = _stack(qt, 16)                                     # [SB, 16, 16]
    q = tl.where(empty[:, None, None], 0, q)
    # element 128h + 32k + 16s + i is value i of group 8h + 2k + s, k = 2kk + kp
    # ql[64h + 32kp + 16s + i] = low4(kk = 0) | low4(kk = 1) << 4
    lo = tl.reshape(q & 0xF, (SB, 2, 2, 2, 2, 16))                        # h, kk, kp, s, i
    ql = tl.reshape(tl.sum(lo << (tl.arange(0, 2) * 4)[None, None, :, None, None, None], axis=2), (SB, 128))
    tl.store(y_ptr + yb[:, None] + tl.arange(0, 128)[None, :], ql.to(tl.uint8), mask=vm)
    # qh[32h + 16s + i] = Σ_k high2(k) << 2k
    hi = tl.reshape(q >> 4, (SB, 2, 4, 2, 16))                            # h, k, s, i
    qh = tl.reshape(tl.sum(hi << (tl.arange(0, 4) * 2)[None, None, :, None, None], axis=2), (SB, 64))
    tl.store(y_ptr + yb[:, None] + 128 + tl.arange(0, 64)[None, :], qh.to(tl.uint8), mask=vm)


@triton.jit
def _q2_k_kernel(x_ptr, y_ptr, tab_ptr, N_SB, SB: tl.constexpr):
    """Q2_K (84 bytes: scales[16], qs[64], d, dmin)."""
    base, yb, valid = _lanes(N_SB, SB, 16, 84)        # base [SB, 16]
    vm = valid[:, None]
    xs = _load_groups(x_ptr, base, vm, 16)                 # 16 x [SB, 16]
    ws = ()
    for i in tl.static_range(16):
        ws = ws + (tl.abs(xs[i]),)
    scales, mins, l_is, l_mn, degen = _qkx2(xs, ws, tab_ptr, 16, 3, 15, True)
    max_scale = _pos_max(scales)                           # [SB]
    max_min = _pos_max(mins)
    has_s = max_scale > 0
    has_m = max_min > 0
    c15 = tl.full(max_scale.shape, 15.0, tl.float32)
    ls = _nearest_int(tl.div_rn(c15, _safe(max_scale, has_s))[:, None] * scales)
    lm = _nearest_int(tl.div_rn(c15, _safe(max_min, has_m))[:, None] * mins)
    sc = tl.where(has_s[:, None], ls & 0xFF, 0)
    sc = (sc | tl.where(has_m[:, None], lm << 4, 0)) & 0xFF                # [SB, 16]
    d = tl.where(has_s, _f16_bits(tl.div_rn(max_scale, c15)), 0)
    dmin = tl.where(has_m, _f16_bits(tl.div_rn(max_min, c15)), 0)
    dq = _f16_val(d)[:, None] * (sc & 0xF).to(tl.float32)
    dmq = _f16_val(dmin)[:, None] * (sc >> 4).to(tl.float32)
    tl.store(y_ptr + yb[:, None] + tl.arange(0, 16)[None, :], sc.to(tl.uint8), mask=vm)
    tl.store(y_ptr + yb[:, None] + 80 + tl.arange(0, 4)[None, :], _f16_pair_bytes(d, dmin).to(tl.uint8), mask=vm)
    nz = dq != 0
    dqs = _safe(dq, nz)
    qt = ()
    for i in tl.static_range(16):
        lr = _lvl(tl.div_rn(xs[i] + dmq, dqs), 0, 3)
        qt = qt + (tl.where(nz, lr, _qkx2_level(xs[i], l_is, l_mn, degen, 3)),)
    q = _stack(qt, 16)                                     # [SB, 16, 16]
    tl.store(y_ptr + yb[:, None] + 16 + tl.arange(0, 64)[None, :], _crumbs(q, SB).to(tl.uint8), mask=vm)


@triton.jit
def _q3_k_kernel(x_ptr, y_ptr, N_SB, SB: tl.constexpr):
    """Q3_K (110 bytes: hmask[32], qs[64], scales[12], d)."""
    base, yb, valid = _lanes(N_SB, SB, 16, 110)       # base [SB, 16]
    vm = valid[:, None]
    xs = _load_groups(x_ptr, base, vm, 16)                 # 16 x [SB, 16]
    scales, L = _q3_rmse(xs, 16, 4)                        # L: 16 x [SB, 16] in [0, 7]
    max_abs, max_scale = _first_absmax(scales, 16)        # [SB]
    has = max_scale != 0
    iscale = tl.div_rn(tl.full(max_scale.shape, -32.0, tl.float32), _safe(max_scale, has))
    l6 = ((_nearest_int(iscale[:, None] * scales) + 128) & 0xFF) - 128    # into int8_t
    l6 = tl.where(has[:, None], tl.minimum(tl.maximum(l6, -32), 31) + 32, 0)   # [SB, 16] in [0, 63]
    d = tl.where(has, _f16_bits(tl.div_rn(tl.full(max_scale.shape, 1.0, tl.float32), iscale)), 0)
    dq = _f16_val(d)[:, None] * (l6 - 32).to(tl.float32)
    # scales: low nibbles of 0..7 / 8..15 in bytes 0-7; bits 4-5 of scale 4k + i in bits 2k of byte 8 + i
    a2 = tl.arange(0, 2)[None, :, None]
    lo = tl.sum((tl.reshape(l6, (SB, 2, 8)) & 0xF) << (a2 * 4), axis=1)    # [SB, 8]
    k4 = tl.arange(0, 4)[None, :, None]
    hi = tl.sum((tl.reshape(l6, (SB, 4, 4)) >> 4) << (k4 * 2), axis=1)     # [SB, 4]
    c4 = tl.arange(0, 4)[None, :]
    tl.store(y_ptr + yb[:, None] + 96 + tl.arange(0, 8)[None, :], lo.to(tl.uint8), mask=vm)
    tl.store(y_ptr + yb[:, None] + 104 + c4, hi.to(tl.uint8), mask=vm)
    tl.store(y_ptr + yb[:, None] + 108 + tl.arange(0, 2)[None, :],
             tl.where(tl.arange(0, 2)[None, :] == 0, d[:, None] & 0xFF, d[:, None] >> 8).to(tl.uint8), mask=vm)
    nz = dq != 0
    dqs = _safe(dq, nz)
    qt = ()
    for i in tl.static_range(16):
        qt = qt + (tl.where(nz, _lvl(tl.div_rn(xs[i], dqs), -4, 3) + 4, L[i]),)
    q = _stack(qt, 16)                                     # [SB, 16, 16] in [0, 7]
    # hmask[16s + i] bit k = level of element 32k + 16s + i (group 2k + s) > 3
    k8 = tl.arange(0, 8)[None, :, None, None]
    hm = tl.reshape(tl.sum((tl.reshape(q, (SB, 8, 2, 16)) >> 2) << k8, axis=1), (SB, 32))
    tl.store(y_ptr + yb[:, None] + tl.arange(0, 32)[None, :], hm.to(tl.uint8), mask=vm)
    tl.store(y_ptr + yb[:, None] + 32 + tl.arange(0, 64)[None, :], _crumbs(q & 3, SB).to(tl.uint8), mask=vm)


# ----------------------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------------------


def _qkx2_table(nmax: int, rmin: float, rdelta: float, nstep: int) -> np.ndarray:
    """(rmin + rdelta*is + nmax) in float32 for is = 0 … nstep, like search.py."""
    f = np.float32
    return np.array([f(f(rmin) + f(rdelta) * f(s)) + f(nmax) for s in range(nstep + 1)], np.float32)


def _rmse1_table(nmax: int) -> np.ndarray:
    """-(nmax + 0.1f*is) in float32 for is = -9 … 9 without 0."""
    f = np.float32
    return np.array([-(f(nmax) + f(0.1) * f(s)) for s in range(-9, 10) if s != 0], np.float32)


# ggml type -> (bytes per block, table)
_SPECS = {
    10: (84, _qkx2_table(3, -0.5, 0.1, 15)),     # Q2_K
    11: (110, np.zeros(1, np.float32)),           # Q3_K (no table)
    12: (144, _qkx2_table(15, -1.0, 0.1, 20)),   # Q4_K
    13: (176, _qkx2_table(31, -0.5, 0.1, 15)),   # Q5_K
    14: (210, _rmse1_table(32)),                 # Q6_K
}
_TABLES: dict[tuple[int, str], torch.Tensor] = {}


def _table(t: int, device: torch.device) -> torch.Tensor:
    key = (t, str(device))
    if key not in _TABLES:
        _TABLES[key] = torch.from_numpy(_SPECS[t][1]).to(device)
    return _TABLES[key]


def handled_types() -> tuple[int, ...]:
    """The ggml type ids :func:`quantize_blocks_triton` quantizes."""
    return tuple(_SPECS)


def quantize_blocks_triton(blocks: torch.Tensor, ggml_type: int, sb: int | None = None,
                           num_warps: int | None = None) -> torch.Tensor | None:
    """blocks (N, 256) float32 → (N, type_size) uint8, byte-identical to quantize_row_q*_K_ref.

    float16 / bfloat16 blocks are also taken (widened exactly in the kernel: the bytes of their
    float32 values, without a float32 copy).  Returns None for a type it does not handle (see
    :func:`handled_types`).  ``sb`` (super-blocks per program, a power of two) and ``num_warps``
    override the defaults (tuning).
    """
    t = int(ggml_type)
    if t not in _SPECS:
        return None
    assert blocks.dim() == 2 and blocks.shape[1] == QK_K, blocks.shape
    assert blocks.dtype in (torch.float32, torch.float16, torch.bfloat16), blocks.dtype
    x = blocks.contiguous()
    n = x.shape[0]
    y = torch.empty(n, _SPECS[t][0], dtype=torch.uint8, device=x.device)
    if n == 0:
        return y
    groups = 16 if t in (10, 11, 14) else 8                # groups per super-block
    if sb is None:
        # GPU: 128 groups per program, one per thread; interpreter: few large programs
        sb = min(1024, triton.next_power_of_2(n)) if interpreting() else max(1, 128 // groups)
    if num_warps is None:
        num_warps = max(1, min(8, sb * groups // 32))
    grid = (triton.cdiv(n, sb),)
    tab = _table(t, x.device)
    opts = dict(num_warps=num_warps, enable_fp_fusion=False)
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        if t == 10:
            k = _q2_k_kernel[grid](x, y, tab, n, SB=sb, **opts)
        elif t == 11:
            k = _q3_k_kernel[grid](x, y, n, SB=sb, **opts)
        elif t in (12, 13):
            k = _q45_k_kernel[grid](x, y, tab, n, SB=sb, Q5=(t == 13), **opts)
        else:
            k = _q6_k_kernel[grid](x, y, tab, n, SB=sb, **opts)
    if k is not None and hasattr(k, "asm"):
        LAUNCHED[(t, sb, num_warps, x.dtype)] = k
    return y


# (type, sb, num_warps, input dtype) -> the compiled kernel last launched (its .asm["ptx"] is
# what scripts/gpu_check_quantize.py audits)
LAUNCHED: dict = {}
