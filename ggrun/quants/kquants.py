"""Dequantization of the k-quants Q2_K … Q6_K: super-blocks of QK_K = 256 elements.

Block layouts (bytes, ggml-common.h):

    Q2_K  84: scales[16] | qs[64] | d f16 | dmin f16
    Q3_K 110: hmask[32] | qs[64] | scales[12] | d f16
    Q4_K 144: d f16 | dmin f16 | scales[12] | qs[128]
    Q5_K 176: d f16 | dmin f16 | scales[12] | qh[32] | qs[128]
    Q6_K 210: ql[128] | qh[64] | scales[16] int8 | d f16

Each function maps blocks (N, type_size) uint8 to (N, 256) float32 with exactly the
float operations of ggml's dequantize_row_* (e.g. Q4_K: ``(d*sc) * q - (dmin*m)``),
so the results are bit-identical to ggml and to gguf-py.
"""

from __future__ import annotations

import torch

from ._common import f16_field, nibbles

QK_K = 256


def _shifts(device: torch.device, *values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8, device=device)


def _crumbs(q: torch.Tensor) -> torch.Tensor:
    """2-bit fields of (N, G, 32) bytes -> (N, G, 4, 32): shift 0, 2, 4, 6."""
    return (q.unsqueeze(-2) >> _shifts(q.device, 0, 2, 4, 6)[:, None]) & 3


def scale_min_k4(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """get_scale_min_k4 for all 8 sub-blocks: scales (N, 12) -> (sc, m), each (N, 8) uint8 (6 bits).

    Bytes 0-3: sc[0..3] low 6 bits, 4-7: m[0..3] low 6 bits; bytes 8-11 hold the low
    nibbles of sc[4..7] and m[4..7] (high nibble); the top two bits of bytes 0-3 / 4-7
    are bits 4-5 of sc[4..7] / m[4..7].
    """
    s = scales.reshape(-1, 3, 4)
    a, b, c = s[:, 0], s[:, 1], s[:, 2]                       # (N, 4) each
    sc = torch.cat([a & 63, (c & 0x0F) | ((a >> 6) << 4)], 1)  # (N, 8)
    m = torch.cat([b & 63, (c >> 4) | ((b >> 6) << 4)], 1)    # (N, 8)
    return sc, m


def dequant_q2_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    scales, qs = b[:, 0:16], b[:, 16:80]
    d, dmin = f16_field(b, 80)[:, None], f16_field(b, 82)[:, None]   # (N, 1)
    dl = (d * (scales & 0x0F).float()).unsqueeze(-1)                 # (N, 16, 1)
    ml = (dmin * (scales >> 4).float()).unsqueeze(-1)                # (N, 16, 1)
    # element 128*h + 32*j + l (h < 2, j < 4, l < 32) = (qs[32*h + l] >> 2j) & 3, sub-block 8h + 2j + l/16
    q = _crumbs(qs.reshape(n, 2, 32)).reshape(n, 16, 16).float()    # (N, 16, 16)
    return q.mul_(dl).sub_(ml).reshape(n, QK_K)                      # dl * q - ml


def q3_k_scales(scales: torch.Tensor) -> torch.Tensor:
    """The 16 6-bit scales of Q3_K, minus 32: (N, 12) uint8 -> (N, 16) int8 values as float.

    Scale j: low 4 bits = nibble (j >= 8) of byte j % 8, high 2 bits = bits 2*(j/4) of byte 8 + j % 4.
    """
    n = scales.shape[0]
    low = nibbles(scales[:, 0:8]).reshape(n, 16)                                   # (N, 16)
    high = _crumbs(scales[:, 8:12].reshape(n, 1, 4)).reshape(n, 16)               # (N, 16)
    return (low | (high << 4)).float() - 32.0


def dequant_q3_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    hmask, qs = b[:, 0:32], b[:, 32:96]
    d = f16_field(b, 108)[:, None]
    dl = (d * q3_k_scales(b[:, 96:108])).unsqueeze(-1)                 # (N, 16, 1)
    ql = _crumbs(qs.reshape(n, 2, 32)).reshape(n, 8, 32)               # (N, 8, 32): element 32*k + l
    # high bit of element 32*k + l: bit k of hmask[l]; when it is clear the value drops by 4
    hbits = (hmask.unsqueeze(1) >> _shifts(b.device, *range(8))[:, None]) & 1  # (N, 8, 32)
    q = ql.to(torch.int8) - ((hbits ^ 1) << 2).to(torch.int8)          # (N, 8, 32) in [-4, 3]
    return q.float().reshape(n, 16, 16).mul_(dl).reshape(n, QK_K)


def dequant_q4_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, dmin = f16_field(b, 0)[:, None], f16_field(b, 2)[:, None]
    sc, m = scale_min_k4(b[:, 4:16])
    d1 = (d * sc.float()).unsqueeze(-1)                                 # (N, 8, 1)
    m1 = (dmin * m.float()).unsqueeze(-1)                               # (N, 8, 1)
    # sub-block 2i: low nibbles of qs[32i : 32i+32], sub-block 2i+1: high nibbles
    q = nibbles(b[:, 16:144].reshape(n, 4, 32)).reshape(n, 8, 32).float()
    return q.mul_(d1).sub_(m1).reshape(n, QK_K)                      # d1 * q - m1


def dequant_q5_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, dmin = f16_field(b, 0)[:, None], f16_field(b, 2)[:, None]
    sc, m = scale_min_k4(b[:, 4:16])
    d1 = (d * sc.float()).unsqueeze(-1)                                 # (N, 8, 1)
    m1 = (dmin * m.float()).unsqueeze(-1)
    ql = nibbles(b[:, 48:176].reshape(n, 4, 32)).reshape(n, 8, 32)      # (N, 8, 32)
    qh = (b[:, 16:48].unsqueeze(1) >> _shifts(b.device, *range(8))[:, None]) & 1  # bit s -> sub-block s
    q = (ql | (qh << 4)).float()                                        # (N, 8, 32) in [0, 31]
    return q.mul_(d1).sub_(m1).reshape(n, QK_K)


def dequant_q6_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    ql, qh = b[:, 0:128], b[:, 128:192]
    sc = b[:, 192:208].contiguous().view(torch.int8).float()            # (N, 16)
    d = f16_field(b, 208)[:, None]
    dl = (d * sc).unsqueeze(-1)                                         # (N, 16, 1): d * sc[is]
    # half h, element 32*k + l: low 4 bits from ql[64h + 32*(k&1) + l] nibble k>>1,
    # high 2 bits from qh[32h + l] >> 2k
    low = nibbles(ql.reshape(n, 2, 64)).reshape(n, 2, 4, 32)            # (N, h, k, l)
    high = _crumbs(qh.reshape(n, 2, 32))                                # (N, h, k, l)
    q = (low | (high << 4)).to(torch.int8) - 32                         # (N, 2, 4, 32) in [-32, 31]
    return q.float().reshape(n, 16, 16).mul_(dl).reshape(n, QK_K)     # (d * sc) * q
