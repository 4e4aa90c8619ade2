"""Quantization to Q2_K … Q6_K: quantize_row_q*_K_ref, what llama-quantize runs without an imatrix.

Each function maps super-blocks x (NB, 256) float32 to blocks (NB, type_size) uint8.
The per-group searches live in :mod:`.search`; here are the super-block steps: the
scales of the groups quantized to 4/6/8 bits against the largest one, f16 super-scales,
the re-quantization of every value with the rounded scales, and the bit packing.
"""

from __future__ import annotations

import torch

from ._common import fdiv, fp16_bits, i16_to_bytes, nearest_int, signed_absmax, sqrtf
from .search import GROUP_MAX_EPS, make_q3_quants_rmse, make_qkx2_quants, make_qx_quants_rmse1

QK_K = 256


def _groups(x: torch.Tensor, n: int) -> torch.Tensor:
    """(NB, 256) -> (n, NB * 256/n): element i of every group of n in row i."""
    return x.reshape(-1, n).t().contiguous()


def _ungroup(L: torch.Tensor, nb: int) -> torch.Tensor:
    """(n, NB * 256/n) -> (NB, 256/n, n)."""
    n = L.shape[0]
    return L.t().reshape(nb, QK_K // n, n)


def _pos_max(v: torch.Tensor) -> torch.Tensor:
    """``m = 0; for (j…) if (v[j] > m) m = v[j];`` over dim 1."""
    m = v.amax(1)
    return torch.where(m > 0, m, torch.zeros_like(m))


def _safe(v: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """v where ok, else 1 (a harmless divisor for lanes whose result is masked away)."""
    return torch.where(ok, v, torch.ones_like(v))


def _f16_value(bits: torch.Tensor) -> torch.Tensor:
    return bits.view(torch.float16).float()


def _u8(v: torch.Tensor) -> torch.Tensor:
    """C's store of an int into uint8_t (wraps)."""
    return v & 0xFF


def _i8(v: torch.Tensor) -> torch.Tensor:
    """C's store of an int into int8_t (wraps)."""
    return ((v + 128) & 0xFF) - 128


def _requant(x: torch.Tensor, dm: torch.Tensor | None, d: torch.Tensor, lo: int, hi: int, old: torch.Tensor) -> torch.Tensor:
    """``if (!d) keep; else L = MAX(lo, MIN(hi, nearest_int((x + dm)/d)))`` per group.

    x (NB, G, n), d / dm (NB, G), old (NB, G, n) float levels -> (NB, G, n) float.
    """
    nz = d != 0
    num = x if dm is None else x + dm[..., None]
    l = nearest_int(fdiv(num, _safe(d, nz)[..., None])).clamp_(lo, hi).float()
    return torch.where(nz[..., None], l, old)


def _pack_crumbs(L: torch.Tensor) -> torch.Tensor:
    """Levels 0..3, (NB, 256) -> qs (NB, 64): qs[32h + l] = L[128h + l] | L[128h+l+32] << 2 | … << 4 | … << 6."""
    q = L.to(torch.uint8).reshape(-1, 2, 4, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)).reshape(-1, 64)


# ----------------------------------------------------------------------------------------
# Q2_K: 16 groups of 16, 2-bit levels, 4-bit scales and mins
# ----------------------------------------------------------------------------------------


def quant_q2_k(x: torch.Tensor) -> torch.Tensor:
    nb = x.shape[0]
    xs = _groups(x, 16)                                                   # (16, NB*16)
    scales, mins, L = make_qkx2_quants(xs, xs.abs(), 3, -0.5, 0.1, 15, True)
    scales, mins = scales.reshape(nb, 16), mins.reshape(nb, 16)
    L = _ungroup(L, nb)                                                   # (NB, 16, 16)
    max_scale, max_min = _pos_max(scales), _pos_max(mins)                 # (NB,)
    has_s, has_m = max_scale > 0, max_min > 0
    ls = nearest_int(fdiv(15.0, _safe(max_scale, has_s))[:, None] * scales)
    lm = nearest_int(fdiv(15.0, _safe(max_min, has_m))[:, None] * mins)
    ls = torch.where(has_s[:, None], _u8(ls), torch.zeros_like(ls))
    sc = _u8(ls | torch.where(has_m[:, None], lm << 4, torch.zeros_like(lm)))  # (NB, 16) bytes
    d = torch.where(has_s, fp16_bits(fdiv(max_scale, 15.0)), torch.zeros_like(max_scale, dtype=torch.int16))
    dmin = torch.where(has_m, fp16_bits(fdiv(max_min, 15.0)), torch.zeros_like(max_min, dtype=torch.int16))
    dq = _f16_value(d)[:, None] * (sc & 0x0F).float()                     # (NB, 16)
    dmq = _f16_value(dmin)[:, None] * (sc >> 4).float()
    L = _requant(x.reshape(nb, 16, 16), dmq, dq, 0, 3, L).reshape(nb, QK_K)
    return torch.cat([sc.to(torch.uint8), _pack_crumbs(L), i16_to_bytes(d), i16_to_bytes(dmin)], 1)


# ----------------------------------------------------------------------------------------
# Q3_K: 16 groups of 16, 3-bit signed levels (2 bits + hmask), 6-bit signed scales
# ----------------------------------------------------------------------------------------


def quant_q3_k(x: torch.Tensor) -> torch.Tensor:
    nb = x.shape[0]
    scales, L = make_q3_quants_rmse(_groups(x, 16), 4)
    scales = scales.reshape(nb, 16)
    L = _ungroup(L, nb)                                                   # (NB, 16, 16) in [0, 7]
    _, max_scale = signed_absmax(scales, 1)                               # first largest |scale|, signed
    has = max_scale != 0
    iscale = fdiv(-32.0, _safe(max_scale, has))                           # (NB,)
    l6 = _i8(nearest_int(iscale[:, None] * scales)).clamp(-32, 31) + 32   # (NB, 16) in [0, 63]
    l6 = torch.where(has[:, None], l6, torch.zeros_like(l6))              # memset(scales, 0)
    d = torch.where(has, fp16_bits(fdiv(1.0, iscale)), torch.zeros_like(max_scale, dtype=torch.int16))
    dq = _f16_value(d)[:, None] * (l6 - 32).float()                       # d * sc
    L = _requant(x.reshape(nb, 16, 16), None, dq, -4, 3, L - 4) + 4       # l + 4
    L = L.reshape(nb, QK_K).to(torch.uint8)
    # scales: low nibbles of 0..7 in bytes 0-7, of 8..15 in their high nibbles;
    # bits 4-5 of scale 4k + i in bits 2k of byte 8 + i
    l6 = l6.to(torch.uint8)
    low = (l6[:, :8] & 0x0F) | ((l6[:, 8:] & 0x0F) << 4)
    hi = (l6 >> 4).reshape(nb, 4, 4)                                      # [k, i]
    high = hi[:, 0] | (hi[:, 1] << 2) | (hi[:, 2] << 4) | (hi[:, 3] << 6)
    # hmask[l] bit k = level of element 32k + l > 3; the 2-bit field keeps level & 3
    big = (L > 3).to(torch.uint8).reshape(nb, 8, 32)
    shifts = torch.arange(8, dtype=torch.uint8, device=x.device)[:, None]
    hmask = (big << shifts).sum(1, dtype=torch.uint8)                     # distinct bits: sum == OR
    qs = _pack_crumbs(torch.where(L > 3, L - 4, L))
    return torch.cat([hmask, qs, low, high, i16_to_bytes(d)], 1)


# ----------------------------------------------------------------------------------------
# Q4_K / Q5_K: 8 groups of 32, 4/5-bit levels, 6-bit scales and mins
# ----------------------------------------------------------------------------------------


def _qkx_superblock(x: torch.Tensor, nmax: int, rmin: float, nstep: int):
    """The shared part of quantize_row_q4_K_ref / q5_K_ref.

    Returns (d bits, dmin bits, scales bytes (NB, 12), L (NB, 256) float levels).
    """
    nb = x.shape[0]
    xs = _groups(x, 32)                                                   # (32, NB*8)
    sum_x2 = torch.zeros_like(xs[0])
    for l in range(32):
        sum_x2 += xs[l] * xs[l]
    av_x = sqrtf(fdiv(sum_x2, 32.0))                                      # sqrtf(sum_x2/32)
    w = av_x + xs.abs()                                                   # weights
    scales, mins, L = make_qkx2_quants(xs, w, nmax, rmin, 0.1, nstep, False)
    scales, mins = scales.reshape(nb, 8), mins.reshape(nb, 8)
    L = _ungroup(L, nb)                                                   # (NB, 8, 32)
    max_scale, max_min = _pos_max(scales), _pos_max(mins)
    inv_scale = torch.where(max_scale > 0, fdiv(63.0, _safe(max_scale, max_scale > 0)), torch.zeros_like(max_scale))
    inv_min = torch.where(max_min > 0, fdiv(63.0, _safe(max_min, max_min > 0)), torch.zeros_like(max_min))
    ls = _u8(nearest_int(inv_scale[:, None] * scales)).clamp(max=63)      # uint8_t ls = …; MIN(63, ls)
    lm = _u8(nearest_int(inv_min[:, None] * mins)).clamp(max=63)
    d = fp16_bits(fdiv(max_scale, 63.0))
    dmin = fp16_bits(fdiv(max_min, 63.0))
    dq = _f16_value(d)[:, None] * ls.float()                              # (NB, 8)
    dmq = _f16_value(dmin)[:, None] * lm.float()
    L = _requant(x.reshape(nb, 8, 32), dmq, dq, 0, nmax, L).reshape(nb, QK_K)
    ls, lm = ls.to(torch.uint8), lm.to(torch.uint8)
    packed = torch.cat(
        [
            ls[:, :4] | ((ls[:, 4:] >> 4) << 6),                          # bytes 0-3
            lm[:, :4] | ((lm[:, 4:] >> 4) << 6),                          # bytes 4-7
            (ls[:, 4:] & 0x0F) | ((lm[:, 4:] & 0x0F) << 4),               # bytes 8-11
        ],
        1,
    )
    return d, dmin, packed, L


def quant_q4_k(x: torch.Tensor) -> torch.Tensor:
    d, dmin, scales, L = _qkx_superblock(x, 15, -1.0, 20)
    q = L.to(torch.uint8).reshape(-1, 4, 2, 32)                           # 64-element chunks: low, high
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    return torch.cat([i16_to_bytes(d), i16_to_bytes(dmin), scales, qs], 1)


def quant_q5_k(x: torch.Tensor) -> torch.Tensor:
    d, dmin, scales, L = _qkx_superblock(x, 31, -0.5, 15)
    q = L.to(torch.uint8).reshape(-1, 8, 32)                              # group s = 8 groups of 32
    shifts = torch.arange(8, dtype=torch.uint8, device=x.device)[:, None]
    qh = ((q >> 4) << shifts).sum(1, dtype=torch.uint8)                   # qh[j] bit s = bit 4 of L[32s + j]
    lo = (q & 0x0F).reshape(-1, 4, 2, 32)
    ql = (lo[:, :, 0] | (lo[:, :, 1] << 4)).reshape(-1, 128)
    return torch.cat([i16_to_bytes(d), i16_to_bytes(dmin), scales, qh, ql], 1)


# ----------------------------------------------------------------------------------------
# Q6_K: 16 groups of 16, 6-bit signed levels, 8-bit signed scales
# ----------------------------------------------------------------------------------------


def quant_q6_k(x: torch.Tensor) -> torch.Tensor:
    nb = x.shape[0]
    scales, L = make_qx_quants_rmse1(_groups(x, 16), 32)
    scales = scales.reshape(nb, 16)
    L = _ungroup(L, nb)                                                   # (NB, 16, 16) in [0, 63]
    max_abs, max_scale = signed_absmax(scales, 1)
    empty = max_abs < GROUP_MAX_EPS                                       # whole block stored as zeros
    iscale = fdiv(-128.0, _safe(max_scale, ~empty))                       # (NB,)
    d = fp16_bits(fdiv(1.0, iscale))
    sc = _i8(nearest_int(iscale[:, None] * scales).clamp(max=127))        # MIN(127, …) into int8_t
    dq = _f16_value(d)[:, None] * sc.float()
    L = _requant(x.reshape(nb, 16, 16), None, dq, -32, 31, L - 32) + 32
    q = L.to(torch.uint8).reshape(nb, 2, 4, 32)                           # [half, k, l]
    lo = q & 0x0F
    ql = torch.cat([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], 2).reshape(nb, 128)
    hi = q >> 4
    qh = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(nb, 64)
    out = torch.cat([ql, qh, sc.to(torch.int8).view(torch.uint8), i16_to_bytes(d)], 1)
    return torch.where(empty[:, None], torch.zeros_like(out), out)
