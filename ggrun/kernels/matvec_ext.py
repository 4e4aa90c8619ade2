"""Fused dequantize-matvec for Q4_1, Q5_0, Q5_1 (blocks of 32) and Q2_K, Q3_K (blocks of 256
in 16 sub-blocks of 16): the kernels ``matvec.matvec_q`` runs for these types.

Same structure and numerics as the kernels in ``matvec``: integer dp4a dot products of the
raw quants with the 8-bit activation blocks (``quantize_x``: q int8, a scale d per 32, Σq per
16), the scales applied once per 16/32 values in f32, as llama.cpp's MMVQ (vec_dot_*_q8_1):

- Q4_1 / Q5_1: d·dx·Σq·xq + m·dx·Σxq (the min through the activation sums);
- Q5_0: d·dx·(Σq·xq − 16·Σxq) (q unsigned 0..31, the offset through the sums);
- Q2_K: d·Σ sc·dx·Σq·xq − dmin·Σ mn·dx·Σxq per sub-block of 16;
- Q3_K: d·Σ (sc − 32)·dx·(Σ(q + 4)·xq − 4·Σxq): the 2 low bits and the high bit OR'ed into
  q + 4 ∈ 0..7 per byte (no per-byte subtraction), the − 4 through the sums (as Q6_K's − 32).

Batch 1 keeps its partial products elementwise across the K loop and reduces them after it;
PF loads the next step's words before this step computes; ``split`` > 1 cuts K into slices
whose parts the last to finish sums (``store_y``); RS = 4 tells Triton the rows are 16-byte
aligned (Q4_1, Q2_K always; Q5_0, Q5_1 and Q3_K blocks are 5 and 27 words, their rows only when
the row length allows).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._common import dp4a, f16_hi, f16_lo, gdc_enter, gdc_launch, program_tile, store_y
from .layout import Q2_K, Q3_K, Q4_1, Q5_0, Q5_1, Packed

EXT_TYPES = (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K)


# --- Q4_1 / Q5_0 / Q5_1 -------------------------------------------------------------------

@triton.jit
def _ld_q451(w_ptr, d_ptr, rbase, dbase, rmask, kb, b_hi, BB: tl.constexpr, T: tl.constexpr):
    """BB blocks from kb: qs words q [BN, BB, 4], qh [BN, BB] (Q5_*), d and m [BN, BB] f32.
    T: 3 Q4_1 (words: qs[16]), 6 Q5_0 and 7 Q5_1 (words: qh[4] · qs[16])."""
    WPB: tl.constexpr = 4 if T == 3 else 5
    QOFF: tl.constexpr = 0 if T == 3 else 1
    v = tl.arange(0, 4)
    bi = kb + tl.arange(0, BB)
    m2 = rmask[:, None] & (bi < b_hi)[None, :]
    base = rbase[:, None] + bi[None, :] * WPB                                          # [BN, BB]
    q = tl.load(w_ptr + (base[:, :, None] + QOFF + v[None, None, :]), mask=m2[:, :, None], other=0)
    if T == 3:
        qh = q
    else:
        qh = tl.load(w_ptr + base, mask=m2, other=0)
    if T == 6:   # d plane: f16 d
        d = tl.load(d_ptr + (dbase[:, None] + bi[None, :]), mask=m2, other=0.0).to(tl.float32)
        m = d
    else:        # d plane as int32 words: d low, m high
        dm = tl.load(d_ptr + (dbase[:, None] + bi[None, :]), mask=m2, other=0)
        d = f16_lo(dm)
        m = f16_hi(dm)
    return q, qh, d, m


@triton.jit
def _c_q451(q, qh, d, m, xq, xd, xs, kb, b_hi, BB: tl.constexpr, T: tl.constexpr, ASM: tl.constexpr):
    """Per (row, block) partial dot products [BN, BB] of one activation row, scales applied.
    qs byte j holds element j (low nibble) and j + 16 (high); bit j of qh is bit 4 of element j."""
    v = tl.arange(0, 4)
    bi = kb + tl.arange(0, BB)
    bmask = bi < b_hi
    xo = bi[:, None] * 8 + v[None, :]                                                  # [BB, 4]
    xa = tl.load(xq + xo, mask=bmask[:, None], other=0)                                # elements 0..15
    xb = tl.load(xq + xo + 4, mask=bmask[:, None], other=0)                            # elements 16..31
    dx = tl.load(xd + bi, mask=bmask, other=0.0)                                       # [BB]
    sx = tl.load(xs + 2 * bi, mask=bmask, other=0.0) + tl.load(xs + 2 * bi + 1, mask=bmask, other=0.0)
    qa = q & 0x0F0F0F0F
    qb = (q >> 4) & 0x0F0F0F0F
    if T != 3:
        sh = 4 * v[None, None, :]
        ha = (qh[:, :, None] >> sh) & 0xF                                              # bits 4v..4v+3
        hb = (qh[:, :, None] >> (sh + 16)) & 0xF                                       # bits 16+4v..
        # 4 bits → bit 4 of each byte: x·0x204081 puts bit b at 8b (the shifted copies don't overlap)
        qa |= ((ha * 0x204081) & 0x01010101) << 4
        qb |= ((hb * 0x204081) & 0x01010101) << 4
    dot = tl.sum(dp4a(qa, xa[None], ASM) + dp4a(qb, xb[None], ASM), axis=2).to(tl.float32)   # [BN, BB]
    if T == 6:
        return d * (dot - 16.0 * sx[None]) * dx[None]
    else:
        return (d * dot + m * sx[None]) * dx[None]


@triton.jit(do_not_specialize=["N", "NB", "bps", "stride_wu", "stride_ym"])
def _mv_q451(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, part_ptr, cnt_ptr,
             N, NB, bps, stride_wu, stride_d, stride_xq, stride_xd,
             stride_xs, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
             T: tl.constexpr, RS: tl.constexpr, ACC: tl.constexpr, SPLIT: tl.constexpr, PF: tl.constexpr,
             ASM: tl.constexpr, GDC: tl.constexpr):
    """Q4_1, Q5_0, Q5_1 (T = the ggml type): blocks of 32, one activation block each."""
    gdc_enter(GDC)
    rows, rmask, b_lo, b_hi = program_tile(N, NB, bps, BN)
    rbase = rows.to(tl.int64) * stride_wu * RS
    dbase = rows.to(tl.int64) * stride_d
    mrow = tl.arange(0, MP)
    acc = tl.zeros([MP, BN], tl.float32)
    acc2 = tl.zeros([BN, BB], tl.float32)               # M = 1: reduced once, after the loop
    if PF:
        q, qh, d, m = _ld_q451(w_ptr, d_ptr, rbase, dbase, rmask, b_lo, b_hi, BB, T)
    for kb in range(b_lo, b_hi, BB):
        if PF:   # the next step's words are in flight while this step computes
            nq, nqh, nd, nm = _ld_q451(w_ptr, d_ptr, rbase, dbase, rmask, kb + BB, b_hi, BB, T)
        else:
            q, qh, d, m = _ld_q451(w_ptr, d_ptr, rbase, dbase, rmask, kb, b_hi, BB, T)
        if M == 1:
            acc2 += _c_q451(q, qh, d, m, xq_ptr, xd_ptr, xs_ptr, kb, b_hi, BB, T, ASM)
        else:
            for mi in tl.static_range(M):
                c = _c_q451(q, qh, d, m, xq_ptr + mi * stride_xq, xd_ptr + mi * stride_xd, xs_ptr + mi * stride_xs,
                            kb, b_hi, BB, T, ASM)
                acc += tl.where(mrow[:, None] == mi, tl.sum(c, axis=1)[None, :], 0.0)
        if PF:
            q, qh, d, m = nq, nqh, nd, nm
    if M == 1:
        acc += tl.sum(acc2, axis=1)[None, :]
    gdc_launch(GDC == 2)
    store_y(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, stride_ym, ACC, SPLIT)


# --- Q2_K / Q3_K --------------------------------------------------------------------------
# Element 128h + 32j + l of a block (h < 2, j < 4, l = 16i + 4t + b < 32): 2 bits at 2j of qs
# byte 32h + l (word 8h + 4i + t of the qs), in sub-block 8h + 2j + i (a scale per 16), in
# activation block 4h + j; Q3_K's high bit is bit 4h + j of hmask byte l (word 4i + t).

@triton.jit
def _ld_q23k(w_ptr, d_ptr, rbase, dbase, rmask, kb, b_hi, BB: tl.constexpr, IS_Q3: tl.constexpr):
    """BB blocks from kb: q [BN, BB, 2(h), 2(i), 4(t)] qs words; Q2_K: scale words sa, sb
    [BN, BB, 2(h)] (sub-blocks 8h..8h+3 and 8h+4..8h+7), the d/dmin word dm [BN, BB];
    Q3_K: hmask words hm [BN, BB, 2(i), 4(t)], scale words sa, sb, sc [BN, BB], d [BN, BB] f32."""
    WPB: tl.constexpr = 27 if IS_Q3 else 20
    QOFF: tl.constexpr = 8 if IS_Q3 else 4
    h5 = tl.arange(0, 2)[None, None, :, None, None]
    t4 = 4 * tl.arange(0, 2)[:, None] + tl.arange(0, 4)[None, :]                        # [2, 4] word in 32
    bi = kb + tl.arange(0, BB)
    m2 = rmask[:, None] & (bi < b_hi)[None, :]
    base = rbase[:, None] + bi[None, :] * WPB                                          # [BN, BB]
    q = tl.load(w_ptr + (base[:, :, None, None, None] + QOFF + 8 * h5 + t4[None, None, None]),
                mask=m2[:, :, None, None, None], other=0)                              # [BN, BB, 2, 2, 4]
    if IS_Q3:
        hm = tl.load(w_ptr + (base[:, :, None, None] + t4[None, None]), mask=m2[:, :, None, None], other=0)
        sa = tl.load(w_ptr + base + 24, mask=m2, other=0)                              # scales[0:4]
        sb = tl.load(w_ptr + base + 25, mask=m2, other=0)                              # scales[4:8]
        sc = tl.load(w_ptr + base + 26, mask=m2, other=0)                              # scales[8:12]
        dm = tl.load(d_ptr + (dbase[:, None] + bi[None, :]), mask=m2, other=0.0).to(tl.float32)
    else:
        h3 = 2 * tl.arange(0, 2)[None, None, :]
        sa = tl.load(w_ptr + (base[:, :, None] + h3), mask=m2[:, :, None], other=0)
        sb = tl.load(w_ptr + (base[:, :, None] + h3 + 1), mask=m2[:, :, None], other=0)
        hm = sa
        sc = sa
        dm = tl.load(d_ptr + (dbase[:, None] + bi[None, :]), mask=m2, other=0)
    return q, hm, sa, sb, sc, dm


@triton.jit
def _c_q23k(q, hm, sa, sb, sc, dm, xq, xd, xs, kb, b_hi, BN: tl.constexpr, BB: tl.constexpr, IS_Q3: tl.constexpr,
            ASM: tl.constexpr):
    """Per (row, block, h, 16-group) partial dot products [BN, BB, 2, 2], block scales applied."""
    bi = kb + tl.arange(0, BB)
    bmask = bi < b_hi
    h4 = tl.arange(0, 2)[None, None, :, None]                                          # [1, 1, 2, 1]
    i4 = tl.arange(0, 2)[None, None, None, :]                                          # [1, 1, 1, 2]
    bx = bi[:, None, None]                                                             # [BB, 1, 1]
    hx = tl.arange(0, 2)[None, :, None]                                                # [1, 2, 1] h
    ix = tl.arange(0, 2)[None, None, :]                                                # [1, 1, 2] i
    tx = (4 * ix)[:, :, :, None] + tl.arange(0, 4)[None, None, None, :]                # [1, 1, 2, 4] word
    xm = bmask[:, None, None]
    ta = tl.zeros([BN, BB, 2, 2], tl.float32)
    tb = tl.zeros([BN, BB, 2, 2], tl.float32)
    for j in tl.static_range(4):
        xw = tl.load(xq + (bx[:, :, :, None] * 64 + 32 * hx[:, :, :, None] + 8 * j + tx),
                     mask=xm[:, :, :, None], other=0)                                  # [BB, 2, 2, 4]
        dx = tl.load(xd + (bx * 8 + 4 * hx + j), mask=xm, other=0.0)[None]              # [1, BB, 2, 1]
        sx = tl.load(xs + (bx * 16 + 8 * hx + 2 * j + ix), mask=xm, other=0.0)[None]    # [1, BB, 2, 2]
        qj = (q >> (2 * j)) & 0x03030303
        sh = 8 * (2 * (j % 2)) + 8 * i4                                                 # byte 2(j%2) + i
        if IS_Q3:
            qj |= ((hm[:, :, None] >> (4 * h4[:, :, :, :, None] + j)) & 0x01010101) << 2    # q + 4: 0..7
            lw = sa if j < 2 else sb
            lo = (lw[:, :, None, None] >> (sh + 4 * h4)) & 0xF
            hi = (sc[:, :, None, None] >> (sh + 2 * (2 * h4 + j // 2))) & 3
            s = ((lo | (hi << 4)) - 32).to(tl.float32)                                 # [BN, BB, 2, 2]
            dot = tl.sum(dp4a(qj, xw[None], ASM), axis=4).to(tl.float32) - 4.0 * sx
            ta += s * dot * dx
        else:
            sw = sa if j < 2 else sb
            s = (sw[:, :, :, None] >> sh) & 0xFF                                       # [BN, BB, 2, 2]
            dot = tl.sum(dp4a(qj, xw[None], ASM), axis=4).to(tl.float32)
            ta += (s & 0xF).to(tl.float32) * dot * dx
            tb += (s >> 4).to(tl.float32) * sx * dx
    if IS_Q3:
        return ta * dm[:, :, None, None]
    else:
        return f16_lo(dm)[:, :, None, None] * ta - f16_hi(dm)[:, :, None, None] * tb


@triton.jit(do_not_specialize=["N", "NB", "bps", "stride_wu", "stride_ym"])
def _mv_q23k(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, part_ptr, cnt_ptr,
             N, NB, bps, stride_wu, stride_d, stride_xq, stride_xd,
             stride_xs, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
             IS_Q3: tl.constexpr, RS: tl.constexpr, ACC: tl.constexpr, SPLIT: tl.constexpr, PF: tl.constexpr,
             ASM: tl.constexpr, GDC: tl.constexpr):
    """Q2_K (IS_Q3=False: 2-bit q, 4-bit scale and min per 16) and Q3_K (3-bit q − 4, 6-bit
    scale − 32 per 16)."""
    gdc_enter(GDC)
    rows, rmask, b_lo, b_hi = program_tile(N, NB, bps, BN)
    rbase = rows.to(tl.int64) * stride_wu * RS
    dbase = rows.to(tl.int64) * stride_d
    mrow = tl.arange(0, MP)
    acc = tl.zeros([MP, BN], tl.float32)
    acc4 = tl.zeros([BN, BB, 2, 2], tl.float32)
    if PF:
        q, hm, sa, sb, sc, dm = _ld_q23k(w_ptr, d_ptr, rbase, dbase, rmask, b_lo, b_hi, BB, IS_Q3)
    for kb in range(b_lo, b_hi, BB):
        if PF:
            nq, nhm, nsa, nsb, nsc, ndm = _ld_q23k(w_ptr, d_ptr, rbase, dbase, rmask, kb + BB, b_hi, BB, IS_Q3)
        else:
            q, hm, sa, sb, sc, dm = _ld_q23k(w_ptr, d_ptr, rbase, dbase, rmask, kb, b_hi, BB, IS_Q3)
        if M == 1:
            acc4 += _c_q23k(q, hm, sa, sb, sc, dm, xq_ptr, xd_ptr, xs_ptr, kb, b_hi, BN, BB, IS_Q3, ASM)
        else:
            for mi in tl.static_range(M):
                c = _c_q23k(q, hm, sa, sb, sc, dm, xq_ptr + mi * stride_xq, xd_ptr + mi * stride_xd,
                            xs_ptr + mi * stride_xs, kb, b_hi, BN, BB, IS_Q3, ASM)
                cs = tl.sum(tl.sum(tl.sum(c, axis=3), axis=2), axis=1)                # [BN]
                acc += tl.where(mrow[:, None] == mi, cs[None, :], 0.0)
        if PF:
            q, hm, sa, sb, sc, dm = nq, nhm, nsa, nsb, nsc, ndm
    if M == 1:
        acc += tl.sum(tl.sum(tl.sum(acc4, axis=3), axis=2), axis=1)[None, :]
    gdc_launch(GDC == 2)
    store_y(acc, y_ptr, part_ptr, cnt_ptr, N, rows, rmask, M, MP, stride_ym, ACC, SPLIT)


def launch(p: Packed, qx, out, part, cnt, grid, bps: int, kw: dict) -> None:
    """Run the kernel of ``p``'s type (one of EXT_TYPES) for ``matvec.matvec_q``: ``grid``,
    ``bps`` (blocks per split) and the meta-parameters ``kw`` as it chose them."""
    t = p.ggml_type
    ws = p.w.stride(0)
    rs = 4 if ws % 4 == 0 else 1                   # 16-byte aligned rows: vector loads
    d = p.d_words
    xw = qx.words
    args = (p.w, d, xw, qx.d, qx.s, out, part, cnt, p.n_out, p.n_blocks, bps, ws // rs, d.stride(0), xw.stride(0),
            qx.d.stride(0), qx.s.stride(0), out.stride(0))
    if t in (Q4_1, Q5_0, Q5_1):
        _mv_q451[grid](*args, T=t, RS=rs, **kw)
    elif t in (Q2_K, Q3_K):
        _mv_q23k[grid](*args, IS_Q3=(t == Q3_K), RS=rs, **kw)
    else:
        raise ValueError(f"matvec_ext has no kernel for ggml type {t}")
