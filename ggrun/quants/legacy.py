"""Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: the 32-element block types (ggml-common.h).

Block layouts (bytes, little-endian):

    Q4_0  18: d f16 | qs[16]            x = d * (q - 8),    q = 4 bits
    Q4_1  20: d f16 | m f16 | qs[16]    x = d * q + m
    Q5_0  22: d f16 | qh[4] | qs[16]    x = d * (q - 16),   q = 4 low bits | bit j of qh << 4
    Q5_1  24: d f16 | m f16 | qh[4] | qs[16]   x = d * q + m
    Q8_0  34: d f16 | qs[32] int8       x = d * q

In ``qs`` byte j holds element j (low nibble) and element j + 16 (high nibble).

Dequantization matches dequantize_row_* bit for bit (same float ops, same order).
Quantization is quantize_row_*_ref, what llama-quantize runs without an imatrix.
"""

from __future__ import annotations

import torch

from ._common import (
    bits_lsb_first,
    f16_field,
    fdiv,
    first_max,
    first_min,
    fp16_bits,
    i16_to_bytes,
    nibbles,
    roundf,
    signed_absmax,
)

# ----------------------------------------------------------------------------------------
# Dequantization: blocks (N, type_size) uint8 -> (N, 32) float32
# ----------------------------------------------------------------------------------------


def _q4(qs: torch.Tensor) -> torch.Tensor:
    """qs (N, 16) -> the 32 4-bit values (N, 32) uint8."""
    return nibbles(qs).reshape(qs.shape[0], 32)


def _q5(qh: torch.Tensor, qs: torch.Tensor) -> torch.Tensor:
    """qh (N, 4), qs (N, 16) -> the 32 5-bit values (N, 32) uint8 (bit 4 of element j = bit j of qh)."""
    return _q4(qs) | (bits_lsb_first(qh) << 4)


def dequant_q4_0(b: torch.Tensor) -> torch.Tensor:
    d = f16_field(b, 0)[:, None]                          # (N, 1)
    q = _q4(b[:, 2:18]).float().sub_(8.0)                 # (N, 32) in [-8, 7], exact
    return q.mul_(d)


def dequant_q4_1(b: torch.Tensor) -> torch.Tensor:
    d, m = f16_field(b, 0)[:, None], f16_field(b, 2)[:, None]  # (N, 1)
    return _q4(b[:, 4:20]).float().mul_(d).add_(m)        # x0*d + m


def dequant_q5_0(b: torch.Tensor) -> torch.Tensor:
    d = f16_field(b, 0)[:, None]
    q = _q5(b[:, 2:6], b[:, 6:22]).float().sub_(16.0)     # (N, 32) in [-16, 15]
    return q.mul_(d)


def dequant_q5_1(b: torch.Tensor) -> torch.Tensor:
    d, m = f16_field(b, 0)[:, None], f16_field(b, 2)[:, None]
    return _q5(b[:, 4:8], b[:, 8:24]).float().mul_(d).add_(m)


def dequant_q8_0(b: torch.Tensor) -> torch.Tensor:
    d = f16_field(b, 0)[:, None]
    return b[:, 2:34].contiguous().view(torch.int8).float().mul_(d)


# ----------------------------------------------------------------------------------------
# Quantization (quantize_row_*_ref): x (N, 32) float32 -> blocks (N, type_size) uint8
# ----------------------------------------------------------------------------------------


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(N, 32) ints 0..15 -> qs (N, 16): element j low, element j + 16 high."""
    q = q.to(torch.uint8)
    return (q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)


def _pack_qh(q: torch.Tensor) -> torch.Tensor:
    """(N, 32) 5-bit values -> qh (N, 4): bit j = bit 4 of element j (little-endian uint32)."""
    hi = ((q >> 4) & 1).to(torch.uint8).reshape(-1, 4, 8)  # (N, byte, bit)
    shifts = torch.arange(8, dtype=torch.uint8, device=q.device)
    return (hi << shifts).sum(-1, dtype=torch.uint8)      # integer OR of distinct bits


def _c_to_int8(v: torch.Tensor) -> torch.Tensor:
    """C's (int8_t)(float) for the values these quantizers produce: truncation toward zero
    (via int32, then wrapped to 8 bits like the compiled code)."""
    i = v.to(torch.int32)
    return ((i + 128) & 0xFF) - 128


def _inv(d: torch.Tensor) -> torch.Tensor:
    """``d ? 1.0f/d : 0.0f``"""
    nz = d != 0
    return torch.where(nz, fdiv(1.0, torch.where(nz, d, torch.ones_like(d))), torch.zeros_like(d))


def quant_q4_0(x: torch.Tensor) -> torch.Tensor:
    _, mx = signed_absmax(x, 1)                           # (N,) signed value of max |x|
    d = fdiv(mx, -8.0)
    idv = _inv(d)[:, None]
    q = _c_to_int8(x * idv + 8.5).clamp(max=15)           # MIN(15, (int8_t)(x0 + 8.5f))
    return torch.cat([i16_to_bytes(fp16_bits(d)), _pack_nibbles(q)], 1)


def quant_q4_1(x: torch.Tensor) -> torch.Tensor:
    mn, mx = first_min(x, 1), first_max(x, 1)             # (N,)
    d = fdiv(mx - mn, 15.0)
    idv = _inv(d)[:, None]
    q = _c_to_int8((x - mn[:, None]) * idv + 0.5).clamp(max=15)
    return torch.cat([i16_to_bytes(fp16_bits(d)), i16_to_bytes(fp16_bits(mn)), _pack_nibbles(q)], 1)


def quant_q5_0(x: torch.Tensor) -> torch.Tensor:
    _, mx = signed_absmax(x, 1)
    d = fdiv(mx, -16.0)
    idv = _inv(d)[:, None]
    q = _c_to_int8(x * idv + 16.5).clamp(max=31)          # MIN(31, (int8_t)(x0 + 16.5f))
    return torch.cat([i16_to_bytes(fp16_bits(d)), _pack_qh(q), _pack_nibbles(q)], 1)


def quant_q5_1(x: torch.Tensor) -> torch.Tensor:
    mn, mx = first_min(x, 1), first_max(x, 1)
    d = fdiv(mx - mn, 31.0)
    idv = _inv(d)[:, None]
    q = ((x - mn[:, None]) * idv + 0.5).to(torch.int32) & 0xFF  # (uint8_t)(x0 + 0.5f), no MIN
    return torch.cat(
        [i16_to_bytes(fp16_bits(d)), i16_to_bytes(fp16_bits(mn)), _pack_qh(q), _pack_nibbles(q)], 1
    )


def quant_q8_0(x: torch.Tensor) -> torch.Tensor:
    amax = x.abs().amax(1)                                # MAX(amax, fabsf(v)): order-free
    d = fdiv(amax, 127.0)
    idv = _inv(d)[:, None]
    q = _c_to_int8(roundf(x * idv)).to(torch.int8)        # roundf: half away from zero
    return torch.cat([i16_to_bytes(fp16_bits(d)), q.view(torch.uint8)], 1)
