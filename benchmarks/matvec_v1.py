"""Frozen copy of ggrun/kernels/matvec.py at 5f3f8cc (the baseline that benchmarks/gpu.py times side by side).

Fused dequantize-matvec for decode (M = 1..8 tokens): y[m, n] = Σ_k W[n, k] · x[m, k].

Integer dot products on the raw quants, as llama.cpp's MMVQ: the activations come as
8-bit blocks (``quantize_x``), each weight word meets an activation word in one dp4a,
and the block scales apply once per 16/32 values. The weight tile of a program is
loaded once and used for all M tokens. ``split`` > 1 cuts K among programs (tall-K and
thin matrices): partial sums go to [split, M, N] and are added after.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ggrun.kernels._common import dp4a, f16_hi, f16_lo, interpreting, kq_scales, use_asm
from ggrun.kernels.layout import Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, Packed
from ggrun.kernels.quantize_x import QX, quantize_x

MAX_M = 8


@triton.jit
def _store(acc, y_ptr, pid_k, rows, rmask, M: tl.constexpr, MP: tl.constexpr, stride_ys, stride_ym,
           ACC: tl.constexpr):
    mrow = tl.arange(0, MP)
    ymask = (mrow[:, None] < M) & rmask[None, :]
    yp = y_ptr + pid_k * stride_ys + mrow[:, None] * stride_ym + rows[None, :]
    if ACC:
        acc += tl.load(yp, mask=ymask, other=0.0)
    tl.store(yp, acc, mask=ymask)


@triton.jit
def _mv_q45k(w_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, N, NB, bps, stride_w, stride_xq, stride_xd, stride_xs,
             stride_ys, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr, IS_Q5: tl.constexpr,
             ACC: tl.constexpr, ASM: tl.constexpr):
    """Q4_K (IS_Q5=False) and Q5_K: blocks of 256 in 8 sub-blocks of 32 (6-bit scale and min)."""
    WPB: tl.constexpr = 44 if IS_Q5 else 36
    QOFF: tl.constexpr = 12 if IS_Q5 else 4
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_n * BN + tl.arange(0, BN)
    rmask = rows < N
    jj = tl.arange(0, 4)
    v = tl.arange(0, 8)
    b_lo = pid_k * bps
    b_hi = tl.minimum(b_lo + bps, NB)
    mrow = tl.arange(0, MP)
    acc = tl.zeros([MP, BN], tl.float32)
    for kb in range(b_lo, b_hi, BB):
        bi = kb + tl.arange(0, BB)
        bmask = bi < b_hi
        m2 = rmask[:, None] & bmask[None, :]
        base = rows[:, None].to(tl.int64) * stride_w + bi[None, :] * WPB               # [BN, BB]
        m4 = m2[:, :, None, None]
        q = tl.load(w_ptr + (base[:, :, None, None] + QOFF + jj[None, None, :, None] * 8 + v[None, None, None, :]),
                    mask=m4, other=0)                                                  # [BN, BB, 4, 8]
        w0 = tl.load(w_ptr + base, mask=m2, other=0)
        w1 = tl.load(w_ptr + base + 1, mask=m2, other=0)
        w2 = tl.load(w_ptr + base + 2, mask=m2, other=0)
        w3 = tl.load(w_ptr + base + 3, mask=m2, other=0)
        qa = q & 0x0F0F0F0F                                                            # sub-block 2jj
        qb = (q >> 4) & 0x0F0F0F0F                                                     # sub-block 2jj+1
        if IS_Q5:
            qh = tl.load(w_ptr + (base[:, :, None, None] + 4 + v[None, None, None, :]), mask=m4, other=0)
            sh = 2 * jj[None, None, :, None]
            qa |= ((qh >> sh) & 0x01010101) << 4
            qb |= ((qh >> (sh + 1)) & 0x01010101) << 4
        d = f16_lo(w0)[:, :, None]
        dmin = f16_hi(w0)[:, :, None]
        sca, scb, mna, mnb = kq_scales(w1[:, :, None], w2[:, :, None], w3[:, :, None], jj[None, None, :])
        dsa = d * sca.to(tl.float32)                                                   # [BN, BB, 4]
        dsb = d * scb.to(tl.float32)
        dma = dmin * mna.to(tl.float32)
        dmb = dmin * mnb.to(tl.float32)
        sa = bi[:, None] * 8 + jj[None, :] * 2                                         # [BB, 4] sub-block ids
        xm = bmask[:, None]
        for m in tl.static_range(M):
            xa = tl.load(xq_ptr + m * stride_xq + (sa[:, :, None] * 8 + v[None, None, :]), mask=xm[:, :, None], other=0)
            xb = tl.load(xq_ptr + m * stride_xq + (sa[:, :, None] * 8 + 8 + v[None, None, :]), mask=xm[:, :, None], other=0)
            da = tl.load(xd_ptr + m * stride_xd + sa, mask=xm, other=0.0)[None]
            db = tl.load(xd_ptr + m * stride_xd + sa + 1, mask=xm, other=0.0)[None]
            ssa = tl.load(xs_ptr + m * stride_xs + 2 * sa, mask=xm, other=0.0) + \
                tl.load(xs_ptr + m * stride_xs + 2 * sa + 1, mask=xm, other=0.0)
            ssb = tl.load(xs_ptr + m * stride_xs + 2 * sa + 2, mask=xm, other=0.0) + \
                tl.load(xs_ptr + m * stride_xs + 2 * sa + 3, mask=xm, other=0.0)
            ia = tl.sum(dp4a(qa, xa[None], ASM), axis=3).to(tl.float32)                 # [BN, BB, 4]
            ib = tl.sum(dp4a(qb, xb[None], ASM), axis=3).to(tl.float32)
            c = da * (dsa * ia - dma * ssa[None]) + db * (dsb * ib - dmb * ssb[None])
            cs = tl.sum(tl.sum(c, axis=2), axis=1)                                     # [BN]
            acc += tl.where(mrow[:, None] == m, cs[None, :], 0.0)
    _store(acc, y_ptr, pid_k, rows, rmask, M, MP, stride_ys, stride_ym, ACC)


@triton.jit
def _mv_q6k(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, N, NB, bps, stride_w, stride_d, stride_xq, stride_xd,
            stride_xs, stride_ys, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
            ACC: tl.constexpr, ASM: tl.constexpr):
    """Q6_K: blocks of 256 = 2 halves × 4 groups of 32, an int8 scale per 16; q − 32."""
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_n * BN + tl.arange(0, BN)
    rmask = rows < N
    h3 = tl.arange(0, 2)[:, None, None]                                                # [2, 1, 1] half
    i3 = tl.arange(0, 2)[None, :, None]                                                # [1, 2, 1] 16-group
    t3 = 4 * i3 + tl.arange(0, 4)[None, None, :]                                       # [1, 2, 4] word in 32
    h5 = h3[None, None]
    t5 = t3[None, None]
    i4 = tl.arange(0, 2)[None, None, None, :]
    b_lo = pid_k * bps
    b_hi = tl.minimum(b_lo + bps, NB)
    mrow = tl.arange(0, MP)
    acc = tl.zeros([MP, BN], tl.float32)
    for kb in range(b_lo, b_hi, BB):
        bi = kb + tl.arange(0, BB)
        bmask = bi < b_hi
        m2 = rmask[:, None] & bmask[None, :]
        base = rows[:, None].to(tl.int64) * stride_w + bi[None, :] * 52                # [BN, BB]
        b5 = base[:, :, None, None, None]
        m5 = m2[:, :, None, None, None]
        qla = tl.load(w_ptr + (b5 + 16 * h5 + t5), mask=m5, other=0)                   # [BN, BB, 2, 2, 4]
        qlb = tl.load(w_ptr + (b5 + 16 * h5 + 8 + t5), mask=m5, other=0)
        qh = tl.load(w_ptr + (b5 + 32 + 8 * h5 + t5), mask=m5, other=0)
        swa = tl.load(w_ptr + (base[:, :, None] + 48 + 2 * tl.arange(0, 2)[None, None, :]), mask=m2[:, :, None], other=0)
        swb = tl.load(w_ptr + (base[:, :, None] + 49 + 2 * tl.arange(0, 2)[None, None, :]), mask=m2[:, :, None], other=0)
        d = tl.load(d_ptr + rows[:, None].to(tl.int64) * stride_d + bi[None, :], mask=m2, other=0.0).to(tl.float32)
        bx = bi[:, None, None]                                                         # [BB, 1, 1]
        hx = tl.arange(0, 2)[None, :, None]                                            # [1, 2, 1] half
        ix = tl.arange(0, 2)[None, None, :]                                            # [1, 1, 2] 16-group
        tx = (4 * ix)[:, :, :, None] + tl.arange(0, 4)[None, None, None, :]                # [1, 1, 2, 4] word
        xm = bmask[:, None, None]
        for g in tl.static_range(4):
            if g == 0:
                qg = (qla & 0x0F0F0F0F) | ((qh << 4) & 0x30303030)
            elif g == 1:
                qg = (qlb & 0x0F0F0F0F) | ((qh << 2) & 0x30303030)
            elif g == 2:
                qg = ((qla >> 4) & 0x0F0F0F0F) | (qh & 0x30303030)
            else:
                qg = ((qlb >> 4) & 0x0F0F0F0F) | ((qh >> 2) & 0x30303030)
            sw = swa if g < 2 else swb                                                  # [BN, BB, 2] by half
            sc = (sw[:, :, :, None] >> (8 * ((2 * g) % 4) + 8 * i4)) & 0xFF            # [BN, BB, 2, 2]
            sc = ((sc ^ 0x80) - 0x80).to(tl.float32)
            for m in tl.static_range(M):
                xw = tl.load(xq_ptr + m * stride_xq + (bx[:, :, :, None] * 64 + 32 * hx[:, :, :, None] + 8 * g + tx),
                             mask=xm[:, :, :, None], other=0)                                  # [BB, 2, 2, 4]
                dx = tl.load(xd_ptr + m * stride_xd + (bx * 8 + 4 * hx + g), mask=xm, other=0.0)          # [BB, 2, 1]
                sx = tl.load(xs_ptr + m * stride_xs + (bx * 16 + 8 * hx + 2 * g + ix), mask=xm, other=0.0)  # [BB, 2, 2]
                dot = tl.sum(dp4a(qg, xw[None], ASM), axis=4).to(tl.float32)           # [BN, BB, 2, 2]
                c = sc * (dot - 32.0 * sx[None]) * dx[None]
                cs = tl.sum(tl.sum(tl.sum(c, axis=3), axis=2) * d, axis=1)             # [BN]
                acc += tl.where(mrow[:, None] == m, cs[None, :], 0.0)
    _store(acc, y_ptr, pid_k, rows, rmask, M, MP, stride_ys, stride_ym, ACC)


@triton.jit
def _mv_q8_q4_0(w_ptr, d_ptr, xq_ptr, xd_ptr, xs_ptr, y_ptr, N, NB, bps, stride_w, stride_d, stride_xq, stride_xd,
                stride_xs, stride_ys, stride_ym, M: tl.constexpr, MP: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
                IS_Q4: tl.constexpr, ACC: tl.constexpr, ASM: tl.constexpr):
    """Q8_0 (32 int8 and a scale) and Q4_0 (IS_Q4: 32 nibbles − 8, byte i holds i and i+16)."""
    WPB: tl.constexpr = 4 if IS_Q4 else 8
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_n * BN + tl.arange(0, BN)
    rmask = rows < N
    v = tl.arange(0, WPB)
    b_lo = pid_k * bps
    b_hi = tl.minimum(b_lo + bps, NB)
    mrow = tl.arange(0, MP)
    acc = tl.zeros([MP, BN], tl.float32)
    for kb in range(b_lo, b_hi, BB):
        bi = kb + tl.arange(0, BB)
        bmask = bi < b_hi
        m2 = rmask[:, None] & bmask[None, :]
        base = rows[:, None].to(tl.int64) * stride_w + bi[None, :] * WPB
        q = tl.load(w_ptr + (base[:, :, None] + v[None, None, :]), mask=m2[:, :, None], other=0)   # [BN, BB, WPB]
        d = tl.load(d_ptr + rows[:, None].to(tl.int64) * stride_d + bi[None, :], mask=m2, other=0.0).to(tl.float32)
        xo = bi[:, None] * 8 + v[None, :]                                              # [BB, WPB]
        for m in tl.static_range(M):
            xa = tl.load(xq_ptr + m * stride_xq + xo, mask=bmask[:, None], other=0)
            dx = tl.load(xd_ptr + m * stride_xd + bi, mask=bmask, other=0.0)           # [BB]
            if IS_Q4:
                xb = tl.load(xq_ptr + m * stride_xq + xo + 4, mask=bmask[:, None], other=0)
                sx = tl.load(xs_ptr + m * stride_xs + 2 * bi, mask=bmask, other=0.0) + \
                    tl.load(xs_ptr + m * stride_xs + 2 * bi + 1, mask=bmask, other=0.0)
                dot = tl.sum(dp4a(q & 0x0F0F0F0F, xa[None], ASM) + dp4a((q >> 4) & 0x0F0F0F0F, xb[None], ASM), axis=2)
                dot = dot.to(tl.float32) - 8.0 * sx[None]
            else:
                dot = tl.sum(dp4a(q, xa[None], ASM), axis=2).to(tl.float32)             # [BN, BB]
            cs = tl.sum(d * dot * dx[None], axis=1)
            acc += tl.where(mrow[:, None] == m, cs[None, :], 0.0)
    _store(acc, y_ptr, pid_k, rows, rmask, M, MP, stride_ys, stride_ym, ACC)


MATVEC_TYPES = (Q4_K, Q5_K, Q6_K, Q8_0, Q4_0)

# (BN rows, BB blocks per step, num_warps) by type; split chosen from the grid size
# measured on an H200 (benchmarks/gpu_results.md): BB=8 for Q4_K, 4 for Q6_K
DEFAULT_CFG = {Q4_K: (8, 8, 4), Q5_K: (8, 8, 4), Q6_K: (8, 4, 4), Q8_0: (8, 16, 4), Q4_0: (8, 32, 4)}
N_SM = 132


def pick_split(n_out: int, n_blocks: int, bn: int, bb: int, target_programs: int = 2 * N_SM) -> int:
    """Cut K so that the grid has about ``target_programs`` programs (none for wide matrices)."""
    progs = triton.cdiv(n_out, bn)
    if interpreting() or progs >= target_programs:
        return 1
    steps = triton.cdiv(n_blocks, bb)
    return max(1, min(steps, target_programs // progs))


def matvec_q(p: Packed, qx: QX, out: torch.Tensor | None = None, acc: bool = False,
             cfg: tuple[int, int, int] | None = None, split: int | None = None) -> torch.Tensor:
    """W (Packed [N, K]) · quantized x (M ≤ 8 rows) → y f32 [M, N]. With ``acc``: y = out + W·x
    (``out`` is read and written in place)."""
    M, K = qx.M, qx.K
    assert 1 <= M <= MAX_M, M
    assert K == p.n_in, (K, p.n_in)
    p.check()
    N, NB = p.n_out, p.n_blocks
    dev = p.w.device
    assert qx.q.device == dev and qx.q.is_contiguous() and qx.d.is_contiguous() and qx.s.is_contiguous()
    bn, bb, warps = cfg or DEFAULT_CFG[p.ggml_type]
    if cfg is None and interpreting():
        bn = max(bn, min(512, triton.next_power_of_2(N)))  # few programs: the interpreter runs them one by one
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
    y = out if split == 1 else torch.empty(split, M, N, dtype=torch.float32, device=dev)
    ys = 0 if split == 1 else y.stride(0)
    ym = y.stride(-2)
    k_acc = acc and split == 1
    xw = qx.words
    grid = (triton.cdiv(N, bn), split)
    asm = use_asm()
    t = p.ggml_type
    if t in (Q4_K, Q5_K):
        _mv_q45k[grid](p.w, xw, qx.d, qx.s, y, N, NB, bps, p.w.stride(0), xw.stride(0), qx.d.stride(0),
                       qx.s.stride(0), ys, ym, M=M, MP=triton.next_power_of_2(M), BN=bn, BB=bb, IS_Q5=(t == Q5_K), ACC=k_acc, ASM=asm,
                       num_warps=warps)
    elif t == Q6_K:
        _mv_q6k[grid](p.w, p.d, xw, qx.d, qx.s, y, N, NB, bps, p.w.stride(0), p.d.stride(0), xw.stride(0),
                      qx.d.stride(0), qx.s.stride(0), ys, ym, M=M, MP=triton.next_power_of_2(M), BN=bn, BB=bb, ACC=k_acc, ASM=asm,
                      num_warps=warps)
    elif t in (Q8_0, Q4_0):
        _mv_q8_q4_0[grid](p.w, p.d, xw, qx.d, qx.s, y, N, NB, bps, p.w.stride(0), p.d.stride(0), xw.stride(0),
                          qx.d.stride(0), qx.s.stride(0), ys, ym, M=M, MP=triton.next_power_of_2(M), BN=bn, BB=bb, IS_Q4=(t == Q4_0),
                          ACC=k_acc, ASM=asm, num_warps=warps)
    else:
        raise ValueError(f"no matvec kernel for ggml type {t}")
    if split > 1:
        if acc:
            out += y.sum(0)
        else:
            torch.sum(y, 0, out=out)
    return out


def matvec(p: Packed, x: torch.Tensor, **kw) -> torch.Tensor:
    """W · x for f32 x [M, K] (M ≤ 8): quantizes x to 8-bit blocks, then ``matvec_q``."""
    return matvec_q(p, quantize_x(x.contiguous()), **kw)
