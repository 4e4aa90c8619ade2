"""Fused dequantize-matvec for decode (M = 1..8 tokens): y[m, n] = Σ_k W[n, k] · x[m, k].

Integer dot products on the raw quants, as llama.cpp's MMVQ: the activations come as
8-bit blocks (``quantize_x``), each weight word meets an activation word in one dp4a,
and the block scales apply once per 16/32 values. The weight tile of a program is
loaded once and used for all M tokens.

Batch 1 (decode): every program keeps its partial products elementwise ([BN, BB, groups])
across the K loop and reduces them once at the end (no cross-thread shuffles inside the
loop), optionally loads the next step's words before computing this one (PF), and sees its
rows as 16-byte aligned (row stride passed in units of 4 words), so the loads vectorize
for every K. ``split`` > 1 cuts K among programs (thin matrices); the last of a row tile's
K-slices to finish sums their parts in a fixed order (``store_y``): deterministic.

Q4_K and Q6_K, whose blocks lie row-interleaved on the GPU (``layout.INTERLEAVE``), have one
kernel each for every batch size (``_mv_q4k_il``, ``_mv_q6k_il``): a row per thread, so that a
warp's weight loads are 512 contiguous bytes and its activation loads broadcasts. (Row-major,
measured on the H200, the kernels were bound by L1 traffic at 55–69 % of the DRAM bandwidth.)
Their bodies (``_q4k_il``, ``_q6k_il``: one row group's sums) also make ``_mv_q6k_q4k_il``, a
Q6_K and a Q4_K matrix on one input in one launch (``matvec_q_pair``); and the Q4_K kernel's
``swiglu`` mode runs a gate group and its up group in one program and quantizes silu(gate)·up
for the next matrix (``matvec_q(swiglu=…)``).

With PDL (``_common``, "end"), a kernel waits for the previous one's writes before reading the
activations (Q4_K's prefetch of its first weights comes before that wait) and lets the next
kernel launch after its K loop.

Here: Q4_K, Q5_K, Q6_K, Q8_0, Q4_0 (and the row-major Q4_K/Q6_K kernels, for A/B runs with
``layout.set_interleave``); ``matvec_ext``: Q4_1, Q5_0, Q5_1, Q2_K, Q3_K (same structure);
``matvec_q`` runs either.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (counters, dp4a, dp4a_acc, dp4a_hi, dp4a_hi_acc, f16_hi, f16_lo, gdc_enter, gdc_launch,
                      gdc_wait, interpreting, kq_scales, lane, pdl_kw, program_tile, silu_mul, use_asm)
from ._common import store_y as _store
from .layout import Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, Packed
from .matvec_ext import EXT_TYPES, launch as _launch_ext
from .quantize_x import QX, q8_blocks, quantize_x, store_q8

MAX_M = 8


# --- Q4_K / Q5_K ----------------------------------------------------------------------

@triton.jit
def _ld_q45k(w_ptr, rbase, rmask, kb, b_hi, BB: tl.constexpr, IS_Q5: tl.constexpr):
    """The words of BB blocks from kb for the rows at ``rbase`` (word offsets, multiples of 4)."""
    WPB: tl.constexpr = 44 if IS_Q5 else 36
    QOFF: tl.constexpr = 12 if IS_Q5 else 4
    jj = tl.arange(0, 4)
    v = tl.arange(0, 8)
    bi = kb + tl.arange(0, BB)
    m2 = rmask[:, None] & (bi < b_hi)[None, :]
    base = rbase[:, None] + bi[None, :] * WPB                                           # [BN, BB]
    m4 = m2[:, :, None, None]
    q = tl.load(w_ptr + (base[:, :, None, None] + QOFF + jj[None, None, :, None] * 8 + v[None, None, None, :]),
                mask=m4, other=0)                                                      # [BN, BB, 4, 8]
    if IS_Q5:
        qh = tl.load(w_ptr + (base[:, :, None, None] + 4 + v[None, None, None, :]), mask=m4, other=0)
    else:
        qh = q
    w0 = tl.load(w_ptr + base, mask=m2, other=0)
    w1 = tl.load(w_ptr + base + 1, mask=m2, other=0)
    w2 = tl.load(w_ptr + base + 2, mask=m2, other=0)
    w3 = tl.load(w_ptr + base + 3, mask=m2, other=0)
    return q, qh, w0, w1, w2, w3


@triton.jit
def _c_q45k(q, qh, w0, w1, w2, w3, xq, xd, xs, kb, b_hi, BB: tl.constexpr, IS_Q5: tl.constexpr, ASM: tl.constexpr):
    """Per (row, block, 64-group) partial dot products [BN, BB, 4] of one activation row."""
    jj = tl.arange(0, 4)
    v = tl.arange(0, 8)
    bi = kb + tl.arange(0, BB)
    bmask = bi < b_hi
    qa = q & 0x0F0F0F0F                                                                # sub-block 2jj
    qb = (q >> 4) & 0x0F0F0F0F                                                         # sub-block 2jj+1
    if IS_Q5:
        sh = 2 * jj[None, None, :, None]
        qa |= ((qh >> sh) & 0x01010101) << 4
        qb |= ((qh >> (sh + 1)) & 0x01010101) << 4
    d = f16_lo(w0)[:, :, None]
    dmin = f16_hi(w0)[:, :, None]
    sca, scb, mna, mnb = kq_scales(w1[:, :, None], w2[:, :, None], w3[:, :, None], jj[None, None, :])
    sa = bi[:, None] * 8 + jj[None, :] * 2                                             # [BB, 4] sub-block ids
    xm = bmask[:, None]
    xa = tl.load(xq + (sa[:, :, None] * 8 + v[None, None, :]), mask=xm[:, :, None], other=0)
    xb = tl.load(xq + (sa[:, :, None] * 8 + 8 + v[None, None, :]), mask=xm[:, :, None], other=0)
    da = tl.load(xd + sa, mask=xm, other=0.0)[None]
    db = tl.load(xd + sa + 1, mask=xm, other=0.0)[None]
    ssa = tl.load(xs + 2 * sa, mask=xm, other=0.0) + tl.load(xs + 2 * sa + 1, mask=xm, other=0.0)
    ssb = tl.load(xs + 2 * sa + 2, mask=xm, other=0.0) + tl.load(xs + 2 * sa + 3, mask=xm, other=0.0)
    ia = tl.sum(dp4a(qa, xa[None], ASM), axis=3).to(tl.float32)                        # [BN, BB, 4]
    ib = tl.sum(dp4a(qb, xb[None], ASM), axis=3).to(tl.float32)
    return da * (d * sca.to(tl.float32) * ia - dmin * mna.to(tl.float32) * ssa[None]) + \
        db * (d * scb.to(tl.float32) * ib - dmin * mnb.to(tl.float32) * ssb[None])


@triton.jit(do_not_specialize=["N", "NB", "bps", "stride_w4", "stride_ym"])
def _mv_q45k(w_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, part_ptr, cnt_ptr,
             N, NB, bps, stride_w4, stride_xq, stride_xd, stride_xs,
             stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr, IS_Q5: tl.constexpr,
             ACC: tl.constexpr, SPLIT: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr, GDC: tl.constexpr):
    """Q4_K (IS_Q5=False) and Q5_K: blocks of 256 in 8 sub-blocks of 32 (6-bit scale and min)."""
    gdc_enter(GDC)
    rows, rmask, b_lo, b_hi = program_tile(N, NB, bps, BN)
    rbase = rows.to(tl.int64) * stride_w4 * 4          # × 4: Triton sees 16-byte aligned rows
    mrow = tl.arange(0, MP)
    acc = tl.zeros([MP, BN], tl.float32)
    acc3 = tl.zeros([BN, BB, 4], tl.float32)            # M = 1: reduced once, after the loop
    if PF:
        q, qh, w0, w1, w2, w3 = _ld_q45k(w_ptr, rbase, rmask, b_lo, b_hi, BB, IS_Q5)
    for kb in range(b_lo, b_hi, BB):
        if PF:   # the next step's words are in flight while this step computes
            nq, nqh, n0, n1, n2, n3 = _ld_q45k(w_ptr, rbase, rmask, kb + BB, b_hi, BB, IS_Q5)
        else:
            q, qh, w0, w1, w2, w3 = _ld_q45k(w_ptr, rbase, rmask, kb, b_hi, BB, IS_Q5)
        if M == 1:
            acc3 += _c_q45k(q, qh, w0, w1, w2, w3, xq_ptr, xd_ptr, xs_ptr, kb, b_hi, BB, IS_Q5, ASM)
        else:
            for m in tl.static_range(M):
                c = _c_q45k(q, qh, w0, w1, w2, w3, xq_ptr + m * stride_xq, xd_ptr + m * stride_xd,
                            xs_ptr + m * stride_xs, kb, b_hi, BB, IS_Q5, ASM)
                cs = tl.sum(tl.sum(c, axis=2), axis=1)                                 # [BN]
                acc += tl.where(mrow[:, None] == m, cs[None, :], 0.0)
        if PF:
            q, qh, w0, w1, w2, w3 = nq, nqh, n0, n1, n2, n3
    if M == 1:
        acc += tl.sum(tl.sum(acc3, axis=2), axis=1)[None, :]
    gdc_launch(GDC == 2)
    _store(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, stride_ym, ACC, SPLIT)


@triton.jit
def _il_tile(w_ptr, grp, N, stride_g4, M: tl.constexpr, MP: tl.constexpr, KS: tl.constexpr):
    """An interleaved kernel's share of row group ``grp``: its 32 rows and their mask, and the
    [S, 128] tile indices (S = MP·KS lanes): lane s [S, 1], element e [1, 128] (row·4 + word:
    Triton lays the threads along it, 16 bytes each, and the warps along the lanes), the word in a
    thread's vector v [1, 1, 4] (for [S, 32, 4] views), the lane's token m [S, 1] and the group's
    words w_ptr + e."""
    rows = grp * 32 + tl.arange(0, 32)
    s = tl.arange(0, MP * KS)[:, None]
    e = tl.arange(0, 128)[None, :]
    v = tl.arange(0, 4)[None, None, :]
    m = tl.minimum(s // KS, M - 1)
    wrow = w_ptr + grp.to(tl.int64) * stride_g4 * 4 + e                                 # × 4: 16-byte groups
    return rows, rows < N, s, e, v, m, wrow


@triton.jit
def _il_store(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M: tl.constexpr, MP: tl.constexpr, KS: tl.constexpr,
              stride_ym, ACC: tl.constexpr, SPLIT: tl.constexpr, GDC: tl.constexpr):
    """The lanes' sums acc [S, 32] meet (a fixed order) and go to y (``store_y``) → them, [MP, 32]."""
    gdc_launch(GDC == 2)
    res = tl.sum(tl.reshape(acc, (MP, KS, 32)), axis=1)                                 # [MP, 32]
    _store(res, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, stride_ym, ACC, SPLIT)
    return res


@triton.jit
def _ld_q4k_il(wb):
    """The 9 chunks of the blocks at ``wb`` [S, 128] (word addresses of chunk 0): the header (d,
    dmin · scales) and, per 64-group, quant words 0-3 and 4-7, each [S, 128]."""
    return (tl.load(wb), tl.load(wb + 128), tl.load(wb + 256), tl.load(wb + 384), tl.load(wb + 512),
            tl.load(wb + 640), tl.load(wb + 768), tl.load(wb + 896), tl.load(wb + 1024))


@triton.jit
def _c_q4k_il(q0, q1, xq_ptr, g_ptr, xrow, grow, bi, d, dmin, h1, h2, h3, v, jj: tl.constexpr, ASM: tl.constexpr):
    """64-group jj of the blocks ``bi`` (d, dmin and scale words h1-h3: [S, 32]) against the
    activations: [S, 32]."""
    xo = xrow + bi * 64 + jj * 16
    xa0 = tl.load(xq_ptr + xo)
    xa1 = tl.load(xq_ptr + xo + 4)
    xb0 = tl.load(xq_ptr + xo + 8)
    xb1 = tl.load(xq_ptr + xo + 12)
    gx = tl.reshape(tl.load(g_ptr + (grow + bi * 16 + jj * 4)), (q0.shape[0], 32, 4))  # d_a, d_b, d_a·Σa, d_b·Σb
    # high nibbles kept in place: 16·Σ from dp4a.u32, the 1/16 goes into the scale
    ib = dp4a_hi_acc(q1 & -252645136, xb1, dp4a_hi(q0 & -252645136, xb0, ASM), ASM)
    ia = dp4a_acc(q1 & 0x0F0F0F0F, xa1, dp4a(q0 & 0x0F0F0F0F, xa0, ASM), ASM)
    ib = tl.sum(tl.reshape(ib, (q0.shape[0], 32, 4)), axis=2)                         # [S, 32]
    ia = tl.sum(tl.reshape(ia, (q0.shape[0], 32, 4)), axis=2)
    sca, scb, mna, mnb = kq_scales(h1, h2, h3, jj)
    t = lane(gx, v, 0) * (sca * ia).to(tl.float32) + lane(gx, v, 1) * 0.0625 * (scb * ib).to(tl.float32)
    u = lane(gx, v, 2) * mna.to(tl.float32) + lane(gx, v, 3) * mnb.to(tl.float32)
    return d * t - dmin * u


@triton.jit
def _q4k_il(w_ptr, xq_ptr, g_ptr, grp, b_lo, b_hi, N, stride_g4, stride_xq, stride_gx, M: tl.constexpr,
            MP: tl.constexpr, KS: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr, GDC: tl.constexpr):
    """Q4_K, row-interleaved (layout.py: 32 rows woven 16 bytes at a time), any batch M ≤ 8: row
    group ``grp``'s sums over blocks [b_lo, b_hi) → (acc [S, 32], rows [32], their mask).

    The program works one row per thread of a warp, with S = MP·KS lanes (tile axis 0, spread
    over the warps): lane s works for token s // KS on every KS-th block. Each weight load of a
    warp is 512 contiguous bytes; each activation load is one address for the whole warp (a
    broadcast); a thread's integer sums and the scales stay in its registers, and the lanes'
    sums meet once, after the K loop (``_il_store``: a fixed order, deterministic). Blocks past
    the range are clamped to valid ones and dropped."""
    S: tl.constexpr = MP * KS
    rows, rmask, s, e, v, m, wrow = _il_tile(w_ptr, grp, N, stride_g4, M, MP, KS)
    xrow = m * stride_xq + e % 4                                                        # [S, 128]: same per row
    grow = m * stride_gx + e % 4
    acc = tl.zeros([S, 32], tl.float32)
    if PF:
        hd, q00, q01, q10, q11, q20, q21, q30, q31 = _ld_q4k_il(wrow + tl.minimum(b_lo + s % KS, b_hi - 1) * 1152)
    gdc_wait(GDC != 0)
    for kb in range(b_lo, b_hi, KS):
        bi = tl.minimum(kb + s % KS, b_hi - 1)                                          # [S, 1]
        if PF:   # the next step's weights are in flight while this step computes
            nxt = wrow + tl.minimum(kb + KS + s % KS, b_hi - 1) * 1152
            nhd, n00, n01, n10, n11, n20, n21, n30, n31 = _ld_q4k_il(nxt)
        else:
            hd, q00, q01, q10, q11, q20, q21, q30, q31 = _ld_q4k_il(wrow + bi * 1152)
        hd3 = tl.reshape(hd, (S, 32, 4))                                                # d, dmin · scales[12]
        w0 = lane(hd3, v, 0)
        d = f16_lo(w0)
        dmin = f16_hi(w0)
        h1 = lane(hd3, v, 1)
        h2 = lane(hd3, v, 2)
        h3 = lane(hd3, v, 3)
        c = _c_q4k_il(q00, q01, xq_ptr, g_ptr, xrow, grow, bi, d, dmin, h1, h2, h3, v, 0, ASM)
        c += _c_q4k_il(q10, q11, xq_ptr, g_ptr, xrow, grow, bi, d, dmin, h1, h2, h3, v, 1, ASM)
        c += _c_q4k_il(q20, q21, xq_ptr, g_ptr, xrow, grow, bi, d, dmin, h1, h2, h3, v, 2, ASM)
        c += _c_q4k_il(q30, q31, xq_ptr, g_ptr, xrow, grow, bi, d, dmin, h1, h2, h3, v, 3, ASM)
        if PF:
            hd, q00, q01, q10, q11, q20, q21, q30, q31 = nhd, n00, n01, n10, n11, n20, n21, n30, n31
        acc += tl.where(kb + s % KS < b_hi, c, 0.0)
    return acc, rows, rmask


@triton.jit(do_not_specialize=["N", "NB", "bps", "stride_g4", "stride_ym"])
def _mv_q4k_il(w_ptr, xq_ptr, g_ptr, y_ptr, part_ptr, cnt_ptr, sq_ptr, sd_ptr, ss_ptr, sg_ptr, N, NB, bps, stride_g4,
               stride_xq, stride_gx, stride_ym, M: tl.constexpr, MP: tl.constexpr, KS: tl.constexpr,
               ACC: tl.constexpr, SPLIT: tl.constexpr, PF: tl.constexpr, SWQ: tl.constexpr, SWG: tl.constexpr,
               ASM: tl.constexpr, GDC: tl.constexpr):
    """Q4_K, row-interleaved: a program per (row group, K-slice) runs ``_q4k_il``.

    SWQ (batch 1, no split; W the stack [gate; up] of N = 2·F rows, F a multiple of 32): program j
    runs gate group j, then up group j, and turns the two [32] results into block j of
    silu(gate)·up as 8-bit activations (``quantize_x``'s numerics; SWG: with the per-64 records)
    for the down matrix, which saves that quantization its own launch. (A version that let the
    two groups' programs meet through an arrival counter lost 8 % on the 33B shape: the fence
    before each program's arrival stalls its SM, and the 33B gate/up tile runs 2 programs per SM.)"""
    gdc_launch(GDC == 1)
    if SWQ:
        j = tl.program_id(0)
        acc, rows, rmask = _q4k_il(w_ptr, xq_ptr, g_ptr, j, 0, NB, N, stride_g4, stride_xq, stride_gx, M, MP, KS,
                                   PF, ASM, GDC)
        g = _il_store(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, KS, stride_ym, False, False, GDC)
        acc, rows, rmask = _q4k_il(w_ptr, xq_ptr, g_ptr, j + N // 64, 0, NB, N, stride_g4, stride_xq, stride_gx, M,
                                   MP, KS, PF, ASM, GDC)
        u = _il_store(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, KS, stride_ym, False, False, GDC)
        qi, d, sq = q8_blocks(tl.reshape(silu_mul(g, u), (1, 2, 16)))
        store_q8(sq_ptr, sd_ptr, ss_ptr, sg_ptr, j * 32, N // 2, qi, d, sq, 1, SWG)
    else:
        b_lo = tl.program_id(1) * bps
        acc, rows, rmask = _q4k_il(w_ptr, xq_ptr, g_ptr, tl.program_id(0), b_lo, tl.minimum(b_lo + bps, NB), N,
                                   stride_g4, stride_xq, stride_gx, M, MP, KS, PF, ASM, GDC)
        _il_store(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, KS, stride_ym, ACC, SPLIT, GDC)


# --- Q6_K -------------------------------------------------------------------------------

@triton.jit
def _ld_q6k(w_ptr, d_ptr, rbase, dbase, rmask, kb, b_hi, BB: tl.constexpr):
    h5 = tl.arange(0, 2)[None, None, :, None, None]                                    # half
    t5 = (4 * tl.arange(0, 2)[:, None] + tl.arange(0, 4)[None, :])[None, None, None]   # [1, 1, 1, 2, 4] word in 32
    bi = kb + tl.arange(0, BB)
    m2 = rmask[:, None] & (bi < b_hi)[None, :]
    base = rbase[:, None] + bi[None, :] * 52                                           # [BN, BB]
    b5 = base[:, :, None, None, None]
    m5 = m2[:, :, None, None, None]
    qla = tl.load(w_ptr + (b5 + 16 * h5 + t5), mask=m5, other=0)                       # [BN, BB, 2, 2, 4]
    qlb = tl.load(w_ptr + (b5 + 16 * h5 + 8 + t5), mask=m5, other=0)
    qh = tl.load(w_ptr + (b5 + 32 + 8 * h5 + t5), mask=m5, other=0)
    swa = tl.load(w_ptr + (base[:, :, None] + 48 + 2 * tl.arange(0, 2)[None, None, :]), mask=m2[:, :, None], other=0)
    swb = tl.load(w_ptr + (base[:, :, None] + 49 + 2 * tl.arange(0, 2)[None, None, :]), mask=m2[:, :, None], other=0)
    d = tl.load(d_ptr + (dbase[:, None] + bi[None, :]), mask=m2, other=0.0).to(tl.float32)
    return qla, qlb, qh, swa, swb, d


@triton.jit
def _q6k_group(qla, qlb, qh, g: tl.constexpr):
    """Q6_K 32-value group g (0..3) of a half: 6-bit values 0..63 in bytes, from the words of ql
    [0:32] (qla), ql[32:64] (qlb) and qh at the same positions."""
    if g == 0:
        qg = (qla & 0x0F0F0F0F) | ((qh << 4) & 0x30303030)
    elif g == 1:
        qg = (qlb & 0x0F0F0F0F) | ((qh << 2) & 0x30303030)
    elif g == 2:
        qg = ((qla >> 4) & 0x0F0F0F0F) | (qh & 0x30303030)
    else:
        qg = ((qlb >> 4) & 0x0F0F0F0F) | ((qh >> 2) & 0x30303030)
    return qg


@triton.jit
def _c_q6k(qla, qlb, qh, swa, swb, d, xq, xd, xs, kb, b_hi, BN: tl.constexpr, BB: tl.constexpr, ASM: tl.constexpr):
    """Per (row, block, half, 16-group) partial dot products [BN, BB, 2, 2], block scale applied."""
    bi = kb + tl.arange(0, BB)
    bmask = bi < b_hi
    i4 = tl.arange(0, 2)[None, None, None, :]
    bx = bi[:, None, None]                                                             # [BB, 1, 1]
    hx = tl.arange(0, 2)[None, :, None]                                                # [1, 2, 1] half
    ix = tl.arange(0, 2)[None, None, :]                                                # [1, 1, 2] 16-group
    tx = (4 * ix)[:, :, :, None] + tl.arange(0, 4)[None, None, None, :]                # [1, 1, 2, 4] word
    xm = bmask[:, None, None]
    tot = tl.zeros([BN, BB, 2, 2], tl.float32)
    for g in tl.static_range(4):
        qg = _q6k_group(qla, qlb, qh, g)
        sw = swa if g < 2 else swb                                                      # [BN, BB, 2] by half
        sc = (sw[:, :, :, None] >> (8 * ((2 * g) % 4) + 8 * i4)) & 0xFF                # [BN, BB, 2, 2]
        sc = ((sc ^ 0x80) - 0x80).to(tl.float32)
        xw = tl.load(xq + (bx[:, :, :, None] * 64 + 32 * hx[:, :, :, None] + 8 * g + tx),
                     mask=xm[:, :, :, None], other=0)                                  # [BB, 2, 2, 4]
        dx = tl.load(xd + (bx * 8 + 4 * hx + g), mask=xm, other=0.0)                    # [BB, 2, 1]
        sx = tl.load(xs + (bx * 16 + 8 * hx + 2 * g + ix), mask=xm, other=0.0)          # [BB, 2, 2]
        dot = tl.sum(dp4a(qg, xw[None], ASM), axis=4).to(tl.float32)                   # [BN, BB, 2, 2]
        tot += sc * (dot - 32.0 * sx[None]) * dx[None]
    return tot * d[:, :, None, None]


@triton.jit(do_not_specialize=["N", "NB", "bps", "stride_w4", "stride_ym"])
def _mv_q6k(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, part_ptr, cnt_ptr,
            N, NB, bps, stride_w4, stride_d, stride_xq, stride_xd,
            stride_xs, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
            ACC: tl.constexpr, SPLIT: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr, GDC: tl.constexpr):
    """Q6_K: blocks of 256 = 2 halves × 4 groups of 32, an int8 scale per 16; q − 32."""
    gdc_enter(GDC)
    rows, rmask, b_lo, b_hi = program_tile(N, NB, bps, BN)
    rbase = rows.to(tl.int64) * stride_w4 * 4
    dbase = rows.to(tl.int64) * stride_d
    mrow = tl.arange(0, MP)
    acc = tl.zeros([MP, BN], tl.float32)
    acc4 = tl.zeros([BN, BB, 2, 2], tl.float32)
    if PF:
        qla, qlb, qh, swa, swb, d = _ld_q6k(w_ptr, d_ptr, rbase, dbase, rmask, b_lo, b_hi, BB)
    for kb in range(b_lo, b_hi, BB):
        if PF:
            nla, nlb, nh, nwa, nwb, nd = _ld_q6k(w_ptr, d_ptr, rbase, dbase, rmask, kb + BB, b_hi, BB)
        else:
            qla, qlb, qh, swa, swb, d = _ld_q6k(w_ptr, d_ptr, rbase, dbase, rmask, kb, b_hi, BB)
        if M == 1:
            acc4 += _c_q6k(qla, qlb, qh, swa, swb, d, xq_ptr, xd_ptr, xs_ptr, kb, b_hi, BN, BB, ASM)
        else:
            for m in tl.static_range(M):
                c = _c_q6k(qla, qlb, qh, swa, swb, d, xq_ptr + m * stride_xq, xd_ptr + m * stride_xd,
                           xs_ptr + m * stride_xs, kb, b_hi, BN, BB, ASM)
                cs = tl.sum(tl.sum(tl.sum(c, axis=3), axis=2), axis=1)                # [BN]
                acc += tl.where(mrow[:, None] == m, cs[None, :], 0.0)
        if PF:
            qla, qlb, qh, swa, swb, d = nla, nlb, nh, nwa, nwb, nd
    if M == 1:
        acc += tl.sum(tl.sum(tl.sum(acc4, axis=3), axis=2), axis=1)[None, :]
    gdc_launch(GDC == 2)
    _store(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, stride_ym, ACC, SPLIT)


@triton.jit
def _q6k_il(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, grp, b_lo, b_hi, N, stride_g4, stride_dg, stride_xq, stride_xd,
            stride_xs, M: tl.constexpr, MP: tl.constexpr, KS: tl.constexpr, ASM: tl.constexpr, GDC: tl.constexpr):
    """Q6_K, row-interleaved, any batch M ≤ 8: as ``_q4k_il`` (one row per thread, lanes over
    warps, [S, 128] tiles). A block is 13 chunks: ql (8), qh (4), scales (1); its d sits in the
    interleaved d plane. Per (half h, 16-column i) the thread holds the ql/qh words of its row and
    forms the four 32-value groups g in place (``_q6k_group``); Σ (q − 32)·x = dot − 32·Σx."""
    S: tl.constexpr = MP * KS
    rows, rmask, s, e, v, m, wrow = _il_tile(w_ptr, grp, N, stride_g4, M, MP, KS)
    drow = d_ptr + grp.to(tl.int64) * stride_dg + (e // 16) * 4 + e % 4                 # rows 4(r//4)..+3: f16 × 4
    r4 = (tl.arange(0, 32) % 4)[None, :, None]
    xrow = m * stride_xq + e % 4
    xdrow = m * stride_xd + e % 4
    xsrow = m * stride_xs + e % 4
    acc = tl.zeros([S, 32], tl.float32)
    gdc_wait(GDC != 0)
    for kb in range(b_lo, b_hi, KS):
        bi = tl.minimum(kb + s % KS, b_hi - 1)                                          # [S, 1]
        wb = wrow + bi * 1664                                                           # 13 chunks × 128 words
        d4 = tl.reshape(tl.load(drow + bi * 32), (S, 32, 4)).to(tl.float32)             # the d of 4 rows
        d = tl.sum(tl.where(v == r4, d4, 0.0), axis=2)                                  # [S, 32]: this row's
        scw = tl.reshape(tl.load(wb + 12 * 128), (S, 32, 4))                            # scales[16]
        tot = tl.zeros([S, 32], tl.float32)
        for h in tl.static_range(2):
            xd4 = tl.reshape(tl.load(xd_ptr + (xdrow + bi * 8 + 4 * h)), (S, 32, 4))      # per 32: g
            xs_a = tl.reshape(tl.load(xs_ptr + (xsrow + bi * 16 + 8 * h)), (S, 32, 4))    # per 16: g 0-1
            xs_b = tl.reshape(tl.load(xs_ptr + (xsrow + bi * 16 + 8 * h + 4)), (S, 32, 4))  # g 2-3
            sw_a = lane(scw, v, 2 * h)
            sw_b = lane(scw, v, 2 * h + 1)
            for i in tl.static_range(2):
                qla = tl.load(wb + (4 * h + i) * 128)                                   # ql[64h + 16i ..]
                qlb = tl.load(wb + (4 * h + 2 + i) * 128)                               # ql[64h + 32 + 16i ..]
                qh = tl.load(wb + (8 + 2 * h + i) * 128)                                # qh[32h + 16i ..]
                for g in tl.static_range(4):
                    xw = tl.load(xq_ptr + (xrow + bi * 64 + 32 * h + 8 * g + 4 * i))
                    dot = tl.sum(tl.reshape(dp4a(_q6k_group(qla, qlb, qh, g), xw, ASM), (S, 32, 4)), axis=2)
                    sw = sw_a if g < 2 else sw_b
                    sc = ((((sw >> (8 * ((2 * g + i) % 4))) & 0xFF) ^ 0x80) - 0x80).to(tl.float32)
                    sx = lane(xs_a if g < 2 else xs_b, v, 2 * (g % 2) + i)
                    tot += sc * (dot.to(tl.float32) - 32.0 * sx) * lane(xd4, v, g)
        acc += tl.where(kb + s % KS < b_hi, tot * d, 0.0)
    return acc, rows, rmask


@triton.jit(do_not_specialize=["N", "NB", "bps", "stride_g4", "stride_dg", "stride_ym"])
def _mv_q6k_il(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, part_ptr, cnt_ptr,
               N, NB, bps, stride_g4, stride_dg, stride_xq, stride_xd,
               stride_xs, stride_ym, M: tl.constexpr, MP: tl.constexpr, KS: tl.constexpr, ACC: tl.constexpr,
               SPLIT: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr, GDC: tl.constexpr):
    """Q6_K, row-interleaved: a program per (row group, K-slice) runs ``_q6k_il``."""
    gdc_launch(GDC == 1)
    b_lo = tl.program_id(1) * bps
    acc, rows, rmask = _q6k_il(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, tl.program_id(0), b_lo,
                               tl.minimum(b_lo + bps, NB), N, stride_g4, stride_dg, stride_xq, stride_xd, stride_xs,
                               M, MP, KS, ASM, GDC)
    _il_store(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, KS, stride_ym, ACC, SPLIT, GDC)


@triton.jit(do_not_specialize=["N6", "N4", "NB", "G6", "stride_g6", "stride_dg", "stride_g4", "stride_ym"])
def _mv_q6k_q4k_il(w6_ptr, d6_ptr, w4_ptr, xq_ptr, xd_ptr, xs_ptr, xg_ptr, y6_ptr, y4_ptr, N6, N4, NB, G6,
                   stride_g6, stride_dg, stride_g4, stride_xq, stride_xd, stride_xs, stride_gx, stride_ym,
                   M: tl.constexpr, MP: tl.constexpr, KS: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr,
                   GDC: tl.constexpr):
    """An interleaved Q6_K and an interleaved Q4_K matrix on one input in one launch (a Q4_K_M
    layer's Q6_K attn_v beside its stacked Q4_K q+k): programs 0..G6-1 take the Q6_K matrix's row
    groups (the larger work per row, started first), the others the Q4_K one's; no split."""
    gdc_launch(GDC == 1)
    grp = tl.program_id(0)
    if grp < G6:
        acc, rows, rmask = _q6k_il(w6_ptr, d6_ptr, xq_ptr, xd_ptr, xs_ptr, grp, 0, NB, N6, stride_g6, stride_dg,
                                   stride_xq, stride_xd, stride_xs, M, MP, KS, ASM, GDC)
        _il_store(acc, y6_ptr, y6_ptr, y6_ptr, N6, rows, rmask, M, MP, KS, stride_ym, False, False, GDC)
    else:
        acc, rows, rmask = _q4k_il(w4_ptr, xq_ptr, xg_ptr, grp - G6, 0, NB, N4, stride_g4, stride_xq, stride_gx,
                                   M, MP, KS, PF, ASM, GDC)
        _il_store(acc, y4_ptr, y4_ptr, y4_ptr, N4, rows, rmask, M, MP, KS, stride_ym, False, False, GDC)


# --- Q8_0 / Q4_0 ------------------------------------------------------------------------

@triton.jit
def _ld_q8_q4_0(w_ptr, d_ptr, rbase, dbase, rmask, kb, b_hi, BB: tl.constexpr, IS_Q4: tl.constexpr):
    WPB: tl.constexpr = 4 if IS_Q4 else 8
    v = tl.arange(0, WPB)
    bi = kb + tl.arange(0, BB)
    m2 = rmask[:, None] & (bi < b_hi)[None, :]
    base = rbase[:, None] + bi[None, :] * WPB
    q = tl.load(w_ptr + (base[:, :, None] + v[None, None, :]), mask=m2[:, :, None], other=0)   # [BN, BB, WPB]
    d = tl.load(d_ptr + (dbase[:, None] + bi[None, :]), mask=m2, other=0.0).to(tl.float32)
    return q, d


@triton.jit
def _c_q8_q4_0(q, d, xq, xd, xs, kb, b_hi, BB: tl.constexpr, IS_Q4: tl.constexpr, ASM: tl.constexpr):
    """Per (row, block) partial dot products [BN, BB], block scales applied."""
    WPB: tl.constexpr = 4 if IS_Q4 else 8
    v = tl.arange(0, WPB)
    bi = kb + tl.arange(0, BB)
    bmask = bi < b_hi
    xo = bi[:, None] * 8 + v[None, :]                                                  # [BB, WPB]
    xa = tl.load(xq + xo, mask=bmask[:, None], other=0)
    dx = tl.load(xd + bi, mask=bmask, other=0.0)                                       # [BB]
    if IS_Q4:
        xb = tl.load(xq + xo + 4, mask=bmask[:, None], other=0)
        sx = tl.load(xs + 2 * bi, mask=bmask, other=0.0) + tl.load(xs + 2 * bi + 1, mask=bmask, other=0.0)
        dot = tl.sum(dp4a(q & 0x0F0F0F0F, xa[None], ASM) + dp4a((q >> 4) & 0x0F0F0F0F, xb[None], ASM), axis=2)
        dot = dot.to(tl.float32) - 8.0 * sx[None]
    else:
        dot = tl.sum(dp4a(q, xa[None], ASM), axis=2).to(tl.float32)                    # [BN, BB]
    return d * dot * dx[None]


@triton.jit(do_not_specialize=["N", "NB", "bps", "stride_w4", "stride_ym"])
def _mv_q8_q4_0(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, part_ptr, cnt_ptr,
                N, NB, bps, stride_w4, stride_d, stride_xq, stride_xd,
                stride_xs, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
                IS_Q4: tl.constexpr, ACC: tl.constexpr, SPLIT: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr,
                GDC: tl.constexpr):
    """Q8_0 (32 int8 and a scale) and Q4_0 (IS_Q4: 32 nibbles − 8, byte i holds i and i+16)."""
    gdc_enter(GDC)
    rows, rmask, b_lo, b_hi = program_tile(N, NB, bps, BN)
    rbase = rows.to(tl.int64) * stride_w4 * 4
    dbase = rows.to(tl.int64) * stride_d
    mrow = tl.arange(0, MP)
    acc = tl.zeros([MP, BN], tl.float32)
    acc2 = tl.zeros([BN, BB], tl.float32)
    if PF:
        q, d = _ld_q8_q4_0(w_ptr, d_ptr, rbase, dbase, rmask, b_lo, b_hi, BB, IS_Q4)
    for kb in range(b_lo, b_hi, BB):
        if PF:
            nq, nd = _ld_q8_q4_0(w_ptr, d_ptr, rbase, dbase, rmask, kb + BB, b_hi, BB, IS_Q4)
        else:
            q, d = _ld_q8_q4_0(w_ptr, d_ptr, rbase, dbase, rmask, kb, b_hi, BB, IS_Q4)
        if M == 1:
            acc2 += _c_q8_q4_0(q, d, xq_ptr, xd_ptr, xs_ptr, kb, b_hi, BB, IS_Q4, ASM)
        else:
            for m in tl.static_range(M):
                c = _c_q8_q4_0(q, d, xq_ptr + m * stride_xq, xd_ptr + m * stride_xd, xs_ptr + m * stride_xs,
                               kb, b_hi, BB, IS_Q4, ASM)
                acc += tl.where(mrow[:, None] == m, tl.sum(c, axis=1)[None, :], 0.0)
        if PF:
            q, d = nq, nd
    if M == 1:
        acc += tl.sum(acc2, axis=1)[None, :]
    gdc_launch(GDC == 2)
    _store(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, stride_ym, ACC, SPLIT)


MATVEC_TYPES = (Q4_K, Q5_K, Q6_K, Q8_0, Q4_0) + EXT_TYPES     # EXT_TYPES: the kernels of matvec_ext

# cfg = (BN rows, BB blocks per step, num_warps, PF prefetch) by type, for M = 1 and for M > 1.
# Batch 1 looks up, in order: TUNED (what a sweep set in this process, ``set_tuned``), the H200
# table of the layout's kernels (H200: row-major, H200_IL: interleaved; the best tile per exact
# shape from the sweeps on an H200, gpu_results.md), then the defaults (DEFAULT_CFG, with THIN_CFG
# for matrices of few rows; DEFAULT_CFG_IL). The row-major Q4_K/Q6_K entries are session 2's
# (A/B runs with ``layout.set_interleave``). The Q4_1/Q5_0/Q5_1/Q2_K/Q3_K tiles
# are not swept yet: by analogy (Q4_1, Q5_*: Q4_0's; Q2_K: about Q4_K's bytes per step;
# Q3_K: Q6_K's, whose kernel has the same shape).
DEFAULT_CFG = {Q4_K: (8, 4, 2, 0), Q5_K: (8, 4, 2, 0), Q6_K: (8, 4, 4, 1), Q8_0: (8, 16, 4, 1), Q4_0: (8, 32, 4, 1),
               Q4_1: (8, 32, 4, 1), Q5_0: (8, 32, 4, 1), Q5_1: (8, 32, 4, 1), Q2_K: (8, 8, 4, 1), Q3_K: (8, 4, 4, 1)}
THIN_CFG = {Q4_K: (2, 16, 4, 1), Q5_K: (2, 16, 4, 1), Q6_K: (2, 8, 4, 1), Q8_0: (2, 32, 4, 1), Q4_0: (2, 64, 4, 1),
            Q4_1: (2, 64, 4, 1), Q5_0: (2, 64, 4, 1), Q5_1: (2, 64, 4, 1), Q2_K: (2, 16, 4, 1), Q3_K: (2, 8, 4, 1)}
THIN_ROWS = 2048
DEFAULT_CFG_BATCH = {Q4_K: (8, 8, 4, 0), Q5_K: (8, 8, 4, 0), Q6_K: (8, 4, 4, 0), Q8_0: (8, 16, 4, 0),
                     Q4_0: (8, 32, 4, 0), Q4_1: (8, 32, 4, 0), Q5_0: (8, 32, 4, 0), Q5_1: (8, 32, 4, 0),
                     Q2_K: (8, 8, 4, 0), Q3_K: (8, 4, 4, 0)}
TUNED: dict[tuple[int, int, int, bool], tuple[tuple[int, int, int, int], int]] = {}   # (t, N, K, interleaved)
# (type, N, K) → (cfg, split): DeepSeek Coder 6.7B / 33B Q4_K_M decode shapes, H200, 2026-11-30
# (the second sweep of gpu_results.md; the whole-token figures there ran with these tiles)
H200: dict[tuple[int, int, int], tuple[tuple[int, int, int, int], int]] = {
    (Q4_K, 7168, 7168): ((8, 4, 2, 0), 1), (Q4_K, 9216, 7168): ((8, 4, 2, 0), 1),
    (Q4_K, 8192, 7168): ((8, 4, 2, 0), 1), (Q6_K, 1024, 7168): ((2, 8, 4, 1), 1),
    (Q4_K, 38400, 7168): ((8, 4, 2, 0), 1), (Q4_K, 7168, 19200): ((8, 4, 2, 0), 1),
    (Q6_K, 7168, 19200): ((16, 4, 4, 1), 1), (Q6_K, 32256, 7168): ((16, 4, 4, 1), 1),
    (Q4_K, 4096, 4096): ((8, 8, 4, 0), 1), (Q4_K, 12288, 4096): ((16, 4, 4, 0), 1),
    (Q4_K, 8192, 4096): ((8, 4, 2, 0), 1), (Q6_K, 4096, 4096): ((4, 4, 2, 1), 1),
    (Q4_K, 22016, 4096): ((8, 8, 4, 0), 1), (Q4_K, 4096, 11008): ((8, 8, 4, 0), 1),
    (Q6_K, 4096, 11008): ((8, 4, 8, 1), 1), (Q6_K, 32256, 4096): ((16, 4, 4, 1), 1),
}
N_SM = 132

# The row-interleaved Q4_K and Q6_K kernels (``_mv_q4k_il``, ``_mv_q6k_il``, every batch size):
# cfg = (32 rows, KS lanes of blocks per step, warps, PF: Q4_K's prefetch of the next step);
# for M > 1 the lanes are KS per token. Defaults: the most frequent winners of the H200 sweep.
DEFAULT_CFG_IL = {Q4_K: (32, 16, 8, 0), Q6_K: (32, 8, 8, 0)}
DEFAULT_CFG_IL_BATCH = {Q4_K: (32, 2, 8, 0), Q6_K: (32, 2, 8, 0)}
# (type, N, K) → (cfg, split): the DeepSeek Coder 33B / 6.7B Q4_K_M decode shapes, H200: session 4's
# per-matrix sweep (benchmarks/gpu_decode_ab.py, device call M in gpu_results.md), then session 5's
# whole-token tuning under PDL "end" with GraphDecoder's fused launches (gpu_fusion_ab.py tune, call
# T), which changed the gate+up tiles (they now also quantize silu(gate)·up, a program per group
# pair); split-K only where it gained (the thin Q6_K matrices, summed in a fixed order)
H200_IL: dict[tuple[int, int, int], tuple[tuple[int, int, int, int], int]] = {
    (Q4_K, 7168, 7168): ((32, 16, 8, 0), 1), (Q4_K, 9216, 7168): ((32, 8, 8, 1), 1),
    (Q4_K, 8192, 7168): ((32, 8, 8, 0), 1), (Q6_K, 1024, 7168): ((32, 8, 8, 0), 4),
    (Q4_K, 38400, 7168): ((32, 16, 8, 0), 1), (Q4_K, 7168, 19200): ((32, 16, 8, 0), 1),
    (Q6_K, 7168, 19200): ((32, 8, 8, 0), 2), (Q6_K, 32256, 7168): ((32, 2, 2, 0), 1),
    (Q4_K, 4096, 4096): ((32, 16, 8, 1), 1), (Q4_K, 12288, 4096): ((32, 8, 8, 1), 1),
    (Q4_K, 8192, 4096): ((32, 16, 8, 0), 1), (Q6_K, 4096, 4096): ((32, 8, 8, 0), 4),
    (Q4_K, 22016, 4096): ((32, 8, 8, 1), 1), (Q4_K, 4096, 11008): ((32, 16, 8, 1), 1),
    (Q6_K, 4096, 11008): ((32, 16, 8, 0), 4), (Q6_K, 32256, 4096): ((32, 8, 8, 0), 1),
}
# (Q6_K rows, Q4_K rows, K) → cfg of ``matvec_q_pair`` (a Q4_K_M layer's Q6_K attn_v beside its q+k),
# H200, session 5 (call T; the 6.7B pair keeps its q+k tile, the default)
H200_PAIR: dict[tuple[int, int, int], tuple[int, int, int, int]] = {(1024, 8192, 7168): (32, 16, 8, 1)}
# (Q6_K rows, Q4_K rows, K, M) → cfg of ``matvec_q_pair`` (what a sweep set in this process)
PAIR_TUNED: dict[tuple[int, int, int, int], tuple[int, int, int, int]] = {}


def set_tuned(ggml_type: int, n_out: int, n_in: int, cfg, split: int = 1) -> None:
    """Use ``cfg`` (and ``split``) for batch-1 products with this type and shape from now on
    (for the kernels of the layout that ``layout.INTERLEAVE`` gives the type now)."""
    from .layout import INTERLEAVE

    t = int(ggml_type)
    TUNED[(t, n_out, n_in, t in INTERLEAVE)] = (_cfg4(cfg), int(split))


def _default_cfg(t: int, il: bool, N: int, K: int, M: int) -> tuple[tuple, int | None]:
    """The tile (and split, None: ``pick_split``) for a product nobody set: TUNED, then the H200
    table of the layout's kernels (batch 1), then their defaults (il: the interleaved kernels)."""
    if M == 1:
        tuned = TUNED.get((t, N, K, il)) or (None if interpreting() else (H200_IL if il else H200).get((t, N, K)))
        if tuned is not None:
            return tuned
    if il:
        return (DEFAULT_CFG_IL if M == 1 else DEFAULT_CFG_IL_BATCH)[t], None
    cfg = (DEFAULT_CFG_BATCH if M > 1 else THIN_CFG if N <= THIN_ROWS else DEFAULT_CFG)[t]
    if interpreting():     # few programs: the interpreter runs them one by one
        cfg = (max(cfg[0], min(512, triton.next_power_of_2(N))), *cfg[1:])
    return cfg, None


def _cfg4(cfg) -> tuple[int, int, int, int]:
    return tuple(cfg) if len(cfg) == 4 else (*cfg, 0)


def pick_split(n_out: int, n_blocks: int, bn: int, bb: int, target_programs: int = 2 * N_SM) -> int:
    """Cut K only when the rows alone give fewer programs than SMs (thin matrices)."""
    progs = triton.cdiv(n_out, bn)
    if interpreting() or progs >= N_SM:
        return 1
    steps = triton.cdiv(n_blocks, bb)
    return max(1, min(steps, triton.cdiv(target_programs, progs)))


def matvec_q(p: Packed, qx: QX, out: torch.Tensor | None = None, acc: bool = False,
             cfg: tuple | None = None, split: int | None = None, swiglu: QX | None = None) -> torch.Tensor:
    """W (Packed [N, K]) · quantized x (M ≤ 8 rows) → y f32 [M, N]. With ``acc``: y = out + W·x
    (``out`` is read and written in place). ``cfg`` = (BN, BB, warps[, prefetch]); ``split`` > 1
    cuts K among programs whose parts are summed in a fixed order by the last to finish.
    ``swiglu`` (batch 1, W the interleaved Q4_K stack [gate; up] of 2·F rows, F a multiple of 32):
    also silu(y[:, :F])·y[:, F:] as 8-bit activations into this ``QX`` [1, F], bit for bit
    ``quantize_x(y[:, :F], up=y[:, F:])``, from the same launch (then K is not split)."""
    M, K = qx.M, qx.K
    assert 1 <= M <= MAX_M, M
    assert K == p.n_in, (K, p.n_in)
    p.check()
    N, NB = p.n_out, p.n_blocks
    dev = p.w.device
    assert qx.q.device == dev and qx.q.is_contiguous() and qx.d.is_contiguous() and qx.s.is_contiguous()
    t = p.ggml_type
    il = p.il > 0
    MP = triton.next_power_of_2(M)
    if cfg is None:
        cfg, tsplit = _default_cfg(t, il, N, K, M)
        split = tsplit if split is None else split
    bn, bb, warps, pf = _cfg4(cfg)
    if il:
        bn = p.il                                              # a program: one group of rows
        warps = min(warps, MP * bb)                            # a warp per lane at most (more would repeat them)
    if swiglu is not None:
        assert il and t == Q4_K and M == 1 and not acc and N % 64 == 0 and p.il == 32, (t, M, N, acc)
        assert swiglu.M == 1 and swiglu.K == N // 2, (swiglu.M, swiglu.K)
        split = 1
    if split is None:
        split = pick_split(N, NB, bn, bb)
    steps = triton.cdiv(NB, bb)
    split = max(1, min(split, steps))
    bps = triton.cdiv(steps, split) * bb                       # blocks per split, a multiple of bb
    split = triton.cdiv(NB, bps)
    if out is None:
        assert not acc
        out = torch.empty(M, N, dtype=torch.float32, device=dev)
    assert out.shape == (M, N) and out.dtype == torch.float32 and out.stride(1) == 1, (out.shape, out.stride())
    ws = p.w.stride(0)
    xw = qx.words
    grid = (triton.cdiv(N, bn), split)
    if split > 1:   # the slices' parts [split, MP, N] and the row tiles' arrival counters (store_y)
        part = torch.empty(split * MP * N, dtype=torch.float32, device=dev)
        cnt = counters(dev, grid[0])
    else:
        part = cnt = out
    kw = dict(ACC=acc, SPLIT=split > 1, PF=bool(pf & 1), ASM=use_asm(), num_warps=warps, **pdl_kw())
    if il:
        ilkw = dict(M=M, MP=MP, KS=bb, **kw)
        if t == Q4_K:
            assert qx.g.shape[1] > 0, qx.g.shape
            sw = (swiglu.q, swiglu.d, swiglu.s, swiglu.g) if swiglu is not None else (out,) * 4
            if swiglu is not None:
                grid = (N // 64, 1)                            # a program per (gate, up) group pair
            _mv_q4k_il[grid](p.w, xw, qx.g, out, part, cnt, *sw, N, NB, bps, ws // 4, xw.stride(0), qx.g.stride(0),
                             out.stride(0), SWQ=swiglu is not None, SWG=swiglu is not None and swiglu.g.shape[1] > 0,
                             **ilkw)
        else:
            assert t == Q6_K, t
            _mv_q6k_il[grid](p.w, p.d, xw, qx.d, qx.s, out, part, cnt, N, NB, bps, ws // 4, p.d.stride(0), xw.stride(0),
                             qx.d.stride(0), qx.s.stride(0), out.stride(0), **ilkw)
        return out
    kw.update(BN=bn, BB=bb, M=M, MP=MP)
    if t in EXT_TYPES:
        _launch_ext(p, qx, out, part, cnt, grid, bps, kw)
        return out
    assert ws % 4 == 0, ws                                     # these types' rows are whole 16-byte units
    if t in (Q4_K, Q5_K):
        _mv_q45k[grid](p.w, xw, qx.d, qx.s, out, part, cnt, N, NB, bps, ws // 4, xw.stride(0), qx.d.stride(0),
                       qx.s.stride(0), out.stride(0), IS_Q5=(t == Q5_K), **kw)
    elif t == Q6_K:
        _mv_q6k[grid](p.w, p.d, xw, qx.d, qx.s, out, part, cnt, N, NB, bps, ws // 4, p.d.stride(0), xw.stride(0),
                      qx.d.stride(0), qx.s.stride(0), out.stride(0), **kw)
    elif t in (Q8_0, Q4_0):
        _mv_q8_q4_0[grid](p.w, p.d, xw, qx.d, qx.s, out, part, cnt, N, NB, bps, ws // 4, p.d.stride(0), xw.stride(0),
                          qx.d.stride(0), qx.s.stride(0), out.stride(0), IS_Q4=(t == Q4_0), **kw)
    else:
        raise ValueError(f"no matvec kernel for ggml type {t}")
    return out


def pairable(pa: Packed, pb: Packed) -> bool:
    """Whether ``matvec_q_pair`` runs these two matrices in one launch: an interleaved Q6_K and an
    interleaved Q4_K of the same width."""
    return ({pa.ggml_type, pb.ggml_type} == {Q4_K, Q6_K} and pa.il == pb.il == 32 and pa.n_in == pb.n_in
            and pa.n_blocks == pb.n_blocks)


def matvec_q_pair(pa: Packed, pb: Packed, qx: QX, ya: torch.Tensor, yb: torch.Tensor,
                  cfg: tuple | None = None) -> None:
    """ya = Wa·x and yb = Wb·x in one launch, for an interleaved Q6_K and Q4_K matrix (either
    order, ``pairable``) on the same quantized x (M ≤ 8): what a Q4_K_M layer's Q6_K attn_v beside
    its stacked q+k needs, where the thin Q6_K matrix alone is mostly launch and ramp. ``cfg``:
    (32, KS, warps[, prefetch]) for both; default the Q4_K matrix's batch-1 tile, without split."""
    assert pairable(pa, pb), (pa.ggml_type, pb.ggml_type, pa.il, pb.il, pa.n_in, pb.n_in)
    (p6, y6), (p4, y4) = sorted(((pa, ya), (pb, yb)), key=lambda t: t[0].ggml_type != Q6_K)
    M, K = qx.M, qx.K
    assert 1 <= M <= MAX_M and K == p4.n_in and qx.g.shape[1] > 0, (M, K, p4.n_in)
    for p, y in ((p6, y6), (p4, y4)):
        p.check()
        assert y.shape == (M, p.n_out) and y.dtype == torch.float32 and y.stride(1) == 1, (y.shape, y.stride())
    assert y6.stride(0) == y4.stride(0), "both outputs in one row-strided buffer"
    MP = triton.next_power_of_2(M)
    if cfg is None:
        cfg = (PAIR_TUNED.get((p6.n_out, p4.n_out, K, M))
               or (H200_PAIR.get((p6.n_out, p4.n_out, K)) if M == 1 and not interpreting() else None)
               or _default_cfg(Q4_K, True, p4.n_out, K, M)[0])
    _, ks, warps, pf = _cfg4(cfg)
    g6 = triton.cdiv(p6.n_out, 32)
    xw = qx.words
    _mv_q6k_q4k_il[(g6 + triton.cdiv(p4.n_out, 32),)](
        p6.w, p6.d, p4.w, xw, qx.d, qx.s, qx.g, y6, y4, p6.n_out, p4.n_out, p4.n_blocks, g6, p6.w.stride(0) // 4,
        p6.d.stride(0), p4.w.stride(0) // 4, xw.stride(0), qx.d.stride(0), qx.s.stride(0), qx.g.stride(0),
        y4.stride(0), M=M, MP=MP, KS=ks, PF=bool(pf & 1), ASM=use_asm(), num_warps=min(warps, MP * ks), **pdl_kw())


def matvec(p: Packed, x: torch.Tensor, **kw) -> torch.Tensor:
    """W · x for f32 x [M, K] (M ≤ 8): quantizes x to 8-bit blocks, then ``matvec_q``."""
    return matvec_q(p, quantize_x(x.contiguous()), **kw)
