"""Fused dequantize-matvec for decode (M = 1..8 tokens): y[m, n] = Σ_k W[n, k] · x[m, k].

Integer dot products on the raw quants, as llama.cpp's MMVQ: the activations come as
8-bit blocks (``quantize_x``), each weight word meets an activation word in one dp4a,
and the block scales apply once per 16/32 values. The weight tile of a program is
loaded once and used for all M tokens.

Batch 1 (decode): every program keeps its partial products elementwise ([BN, BB, groups])
across the K loop and reduces them once at the end (no cross-thread shuffles inside the
loop), optionally loads the next step's words before computing this one (PF), and sees its
rows as 16-byte aligned (row stride passed in units of 4 words), so the loads vectorize
for every K. ``split`` > 1 cuts K among programs (thin matrices), which add their parts
into y with atomics.

Here: Q4_K, Q5_K, Q6_K, Q8_0, Q4_0; ``matvec_ext``: Q4_1, Q5_0, Q5_1, Q2_K, Q3_K (same
structure); ``matvec_q`` runs either.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import dp4a, f16_hi, f16_lo, gdc_sync, interpreting, kq_scales, pdl_kw, use_asm
from ._common import store_y as _store
from .layout import Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, Packed
from .matvec_ext import EXT_TYPES, launch as _launch_ext
from .quantize_x import QX, quantize_x

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
def _mv_q45k(w_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, N, NB, bps, stride_w4, stride_xq, stride_xd, stride_xs,
             stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr, IS_Q5: tl.constexpr,
             ACC: tl.constexpr, ATOMIC: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr, GDC: tl.constexpr):
    """Q4_K (IS_Q5=False) and Q5_K: blocks of 256 in 8 sub-blocks of 32 (6-bit scale and min)."""
    gdc_sync(GDC)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_n * BN + tl.arange(0, BN)
    rmask = rows < N
    rbase = rows.to(tl.int64) * stride_w4 * 4          # × 4: Triton sees 16-byte aligned rows
    b_lo = pid_k * bps
    b_hi = tl.minimum(b_lo + bps, NB)
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
    _store(acc, y_ptr, rows, rmask, M, MP, stride_ym, ACC, ATOMIC)


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
        if g == 0:
            qg = (qla & 0x0F0F0F0F) | ((qh << 4) & 0x30303030)
        elif g == 1:
            qg = (qlb & 0x0F0F0F0F) | ((qh << 2) & 0x30303030)
        elif g == 2:
            qg = ((qla >> 4) & 0x0F0F0F0F) | (qh & 0x30303030)
        else:
            qg = ((qlb >> 4) & 0x0F0F0F0F) | ((qh >> 2) & 0x30303030)
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
def _mv_q6k(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, N, NB, bps, stride_w4, stride_d, stride_xq, stride_xd,
            stride_xs, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
            ACC: tl.constexpr, ATOMIC: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr, GDC: tl.constexpr):
    """Q6_K: blocks of 256 = 2 halves × 4 groups of 32, an int8 scale per 16; q − 32."""
    gdc_sync(GDC)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_n * BN + tl.arange(0, BN)
    rmask = rows < N
    rbase = rows.to(tl.int64) * stride_w4 * 4
    dbase = rows.to(tl.int64) * stride_d
    b_lo = pid_k * bps
    b_hi = tl.minimum(b_lo + bps, NB)
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
    _store(acc, y_ptr, rows, rmask, M, MP, stride_ym, ACC, ATOMIC)


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
def _mv_q8_q4_0(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, N, NB, bps, stride_w4, stride_d, stride_xq, stride_xd,
                stride_xs, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
                IS_Q4: tl.constexpr, ACC: tl.constexpr, ATOMIC: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr, GDC: tl.constexpr):
    """Q8_0 (32 int8 and a scale) and Q4_0 (IS_Q4: 32 nibbles − 8, byte i holds i and i+16)."""
    gdc_sync(GDC)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_n * BN + tl.arange(0, BN)
    rmask = rows < N
    rbase = rows.to(tl.int64) * stride_w4 * 4
    dbase = rows.to(tl.int64) * stride_d
    b_lo = pid_k * bps
    b_hi = tl.minimum(b_lo + bps, NB)
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
    _store(acc, y_ptr, rows, rmask, M, MP, stride_ym, ACC, ATOMIC)


MATVEC_TYPES = (Q4_K, Q5_K, Q6_K, Q8_0, Q4_0) + EXT_TYPES     # EXT_TYPES: the kernels of matvec_ext

# cfg = (BN rows, BB blocks per step, num_warps, PF prefetch) by type, for M = 1 and for M > 1.
# Batch 1 looks up, in order: TUNED (what a sweep set in this process, ``set_tuned``), H200
# (the best tile per exact shape from benchmarks/gpu.py's sweeps on an H200, gpu_results.md),
# then DEFAULT_CFG, with THIN_CFG for matrices of few rows. The Q4_1/Q5_0/Q5_1/Q2_K/Q3_K tiles
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
TUNED: dict[tuple[int, int, int], tuple[tuple[int, int, int, int], int]] = {}
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


def set_tuned(ggml_type: int, n_out: int, n_in: int, cfg, split: int = 1) -> None:
    """Use ``cfg`` (and ``split``) for batch-1 products with this type and shape from now on."""
    TUNED[(int(ggml_type), n_out, n_in)] = (_cfg4(cfg), int(split))


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
             cfg: tuple | None = None, split: int | None = None) -> torch.Tensor:
    """W (Packed [N, K]) · quantized x (M ≤ 8 rows) → y f32 [M, N]. With ``acc``: y = out + W·x
    (``out`` is read and written in place). ``cfg`` = (BN, BB, warps[, prefetch]); ``split`` > 1
    cuts K among programs that add their parts into y with atomics (y zeroed first unless acc)."""
    M, K = qx.M, qx.K
    assert 1 <= M <= MAX_M, M
    assert K == p.n_in, (K, p.n_in)
    p.check()
    N, NB = p.n_out, p.n_blocks
    dev = p.w.device
    assert qx.q.device == dev and qx.q.is_contiguous() and qx.d.is_contiguous() and qx.s.is_contiguous()
    t = p.ggml_type
    if cfg is None:
        tuned = None
        if M == 1:
            tuned = TUNED.get((t, N, K)) or (None if interpreting() else H200.get((t, N, K)))
        if tuned is not None:
            cfg, split = tuned[0], (tuned[1] if split is None else split)
        else:
            cfg = (DEFAULT_CFG_BATCH if M > 1 else THIN_CFG if N <= THIN_ROWS else DEFAULT_CFG)[t]
            if interpreting():     # few programs: the interpreter runs them one by one
                cfg = (max(cfg[0], min(512, triton.next_power_of_2(N))), *cfg[1:])
    bn, bb, warps, pf = _cfg4(cfg)
    if split is None:
        split = pick_split(N, NB, bn, bb)
    steps = triton.cdiv(NB, bb)
    split = max(1, min(split, steps))
    bps = triton.cdiv(steps, split) * bb                       # blocks per split, a multiple of bb
    split = triton.cdiv(NB, bps)
    if out is None:
        assert not acc
        out = (torch.zeros if split > 1 else torch.empty)(M, N, dtype=torch.float32, device=dev)
    elif split > 1 and not acc:
        out.zero_()
    assert out.shape == (M, N) and out.dtype == torch.float32 and out.stride(1) == 1, (out.shape, out.stride())
    ws = p.w.stride(0)
    xw = qx.words
    grid = (triton.cdiv(N, bn), split)
    kw = dict(M=M, MP=triton.next_power_of_2(M), BN=bn, BB=bb, ACC=acc, ATOMIC=split > 1, PF=bool(pf),
              ASM=use_asm(), num_warps=warps, **pdl_kw())
    if t in EXT_TYPES:
        _launch_ext(p, qx, out, grid, bps, kw)
        return out
    assert ws % 4 == 0, ws                                     # these types' rows are whole 16-byte units
    if t in (Q4_K, Q5_K):
        _mv_q45k[grid](p.w, xw, qx.d, qx.s, out, N, NB, bps, ws // 4, xw.stride(0), qx.d.stride(0), qx.s.stride(0),
                       out.stride(0), IS_Q5=(t == Q5_K), **kw)
    elif t == Q6_K:
        _mv_q6k[grid](p.w, p.d, xw, qx.d, qx.s, out, N, NB, bps, ws // 4, p.d.stride(0), xw.stride(0), qx.d.stride(0),
                      qx.s.stride(0), out.stride(0), **kw)
    elif t in (Q8_0, Q4_0):
        _mv_q8_q4_0[grid](p.w, p.d, xw, qx.d, qx.s, out, N, NB, bps, ws // 4, p.d.stride(0), xw.stride(0),
                          qx.d.stride(0), qx.s.stride(0), out.stride(0), IS_Q4=(t == Q4_0), **kw)
    else:
        raise ValueError(f"no matvec kernel for ggml type {t}")
    return out


def matvec(p: Packed, x: torch.Tensor, **kw) -> torch.Tensor:
    """W · x for f32 x [M, K] (M ≤ 8): quantizes x to 8-bit blocks, then ``matvec_q``."""
    return matvec_q(p, quantize_x(x.contiguous()), **kw)
