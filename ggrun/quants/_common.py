"""Shared helpers of the codecs: byte fields, f16 packing, ggml's float idioms in torch.

Every helper works on CPU and CUDA tensors alike.  The float helpers reproduce the
exact float32 operations of ggml's C code (IEEE single precision, round to nearest
even, no fused multiply-add, left-to-right evaluation), so they never call an op that
could reorder or fuse (no ``sum``, ``cumsum``, ``addcmul`` …) and never divide by a
Python scalar (see :func:`fdiv`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

# ----------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------


def as_u8_tensor(data, device: torch.device | str | None = None) -> torch.Tensor:
    """``data`` (torch uint8 tensor or numpy array, e.g. a read-only np.memmap) as a uint8 tensor.

    A numpy array is wrapped without a copy (a read-only one too: the codecs only read
    their input and always return new tensors, so the alias never escapes).  A numpy
    array of another dtype is reinterpreted as its bytes along the last axis.
    """
    if isinstance(data, torch.Tensor):
        t = data if data.dtype == torch.uint8 else _bytes_of(data)
    else:
        a = np.asarray(data)
        if a.dtype != np.uint8:
            a = np.ascontiguousarray(a)
            a = a.view(np.uint8) if a.ndim else a.reshape(1).view(np.uint8)
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        if a.flags.writeable:
            t = torch.from_numpy(a)
        else:
            with warnings.catch_warnings():
                # "The given NumPy array is not writable": we never write to it.
                warnings.simplefilter("ignore", UserWarning)
                t = torch.from_numpy(a)
    if device is not None and t.device != torch.device(device):
        t = t.to(device)
    return t


def _bytes_of(t: torch.Tensor) -> torch.Tensor:
    """A tensor of any dtype as uint8 bytes, last axis widened by the item size."""
    t = t.contiguous()
    if t.dim() == 0:
        t = t.reshape(1)
    return t.view(torch.uint8)


# ----------------------------------------------------------------------------------------
# Byte fields of a block (blocks: (N, type_size) uint8)
# ----------------------------------------------------------------------------------------


def f16_field(blocks: torch.Tensor, offset: int) -> torch.Tensor:
    """The little-endian f16 at byte ``offset`` of each block, as float32. (N, S) -> (N,)"""
    return blocks[:, offset : offset + 2].contiguous().view(torch.float16).reshape(-1).float()


def bits_lsb_first(b: torch.Tensor) -> torch.Tensor:
    """Unpack the bits of uint8 bytes, least significant first. (..., n) -> (..., n*8) of 0/1 uint8."""
    shifts = torch.arange(8, dtype=torch.uint8, device=b.device)
    return ((b.unsqueeze(-1) >> shifts) & 1).reshape(*b.shape[:-1], b.shape[-1] * 8)


def nibbles(b: torch.Tensor) -> torch.Tensor:
    """(..., n) uint8 -> (..., 2, n): low nibbles, then high nibbles."""
    return torch.stack((b & 0x0F, b >> 4), dim=-2)


# ----------------------------------------------------------------------------------------
# f32 -> f16 / bf16 exactly like ggml (GGML_FP32_TO_FP16, ggml_compute_fp32_to_bf16)
# ----------------------------------------------------------------------------------------


def fp16_bits(x: torch.Tensor) -> torch.Tensor:
    """GGML_FP32_TO_FP16 of a float32 tensor, as int16 bits (round to nearest even;
    NaN becomes sign|0x7E00 like ggml's software conversion)."""
    h = x.to(torch.float16).view(torch.int16)
    nan = torch.isnan(x)
    if bool(nan.any()):
        sign = (x.view(torch.int32) >> 16) & -32768  # 0x8000 as int16 sign bit
        h = torch.where(nan, (sign | 0x7E00).to(torch.int16), h)
    return h


def i16_to_bytes(h: torch.Tensor) -> torch.Tensor:
    """int16 (N,) -> little-endian bytes (N, 2) uint8."""
    return h.contiguous().view(torch.uint8).reshape(-1, 2)


def fp32_to_bf16_bits(x: torch.Tensor) -> torch.Tensor:
    """ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet. float32 -> int16 bits.

    In int32 two's complement: the rounding add never overflows for a non-NaN value, and
    the arithmetic shift differs from C's unsigned one only above bit 15, which is dropped.
    """
    u = x.contiguous().view(torch.int32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rne = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
    bits = torch.where(nan, (u >> 16) | 64, rne)
    return bits.to(torch.int16)  # keeps the low 16 bits


# ----------------------------------------------------------------------------------------
# ggml float idioms
# ----------------------------------------------------------------------------------------

MAGIC = 12582912.0  # 1.5 * 2**23, ggml's nearest_int bias


def nearest_int(v: torch.Tensor) -> torch.Tensor:
    """ggml's nearest_int(), bit for bit, also outside its asserted range (|v| <= 4194303).

    ``val = v + 12582912.f`` rounds v to an integer (round half to even) in the low
    mantissa bits; ``(bits & 0x7fffff) - 0x400000`` reads it back.  Returns int32.
    """
    return ((v + MAGIC).view(torch.int32) & 0x007FFFFF) - 0x00400000


def round_small(v: torch.Tensor) -> torch.Tensor:
    """nearest_int() as a float, valid where |v| < 2**22 (then identical to nearest_int):
    ``(v + 1.5*2**23) - 1.5*2**23`` rounds half to even. Used in the search loops, whose
    arguments are bounded by construction (|v| <= nmax + 1)."""
    return (v + MAGIC) - MAGIC


def fdiv(a, b) -> torch.Tensor:
    """IEEE float32 ``a / b`` where either side may be a Python number.

    Never divides by a Python scalar: on CUDA ``t / 15.0`` is computed as ``t * (1/15)``
    (different rounding), and ``15.0 / t`` is ``t.reciprocal() * 15`` everywhere.
    """
    if not isinstance(a, torch.Tensor):
        a = torch.full_like(b, float(np.float32(a)))
    if not isinstance(b, torch.Tensor):
        b = torch.tensor(float(np.float32(b)), dtype=torch.float32, device=a.device)
    return torch.div(a, b)


def sqrtf(v: torch.Tensor) -> torch.Tensor:
    """C's sqrtf: the correctly rounded float32 square root.

    torch.sqrt on float32 CPU tensors is not correctly rounded (about 1 in 6 results
    is 1 ulp off on AVX-512 builds), so: take the float64 root rounded to float32 (a
    candidate within 1 ulp whatever the float64 sqrt's accuracy), then keep the one of
    it and its two float32 neighbours whose rounding interval holds v.  Midpoints of
    float32 neighbours have 25 significant bits, their squares 50: exact in float64.
    """
    r = torch.sqrt(v.double()).float()
    vd = v.double()
    up = torch.nextafter(r, torch.full_like(r, float("inf")))
    down = torch.nextafter(r, torch.zeros_like(r))
    mid_up = (r.double() + up.double()) * 0.5
    mid_down = (r.double() + down.double()) * 0.5
    r = torch.where(vd > mid_up * mid_up, up, r)
    r = torch.where((vd < mid_down * mid_down) & (down < r), down, r)
    return torch.where(torch.isfinite(v) & (v > 0), r, torch.sqrt(v))


def f32(v: float) -> float:
    """A Python float holding exactly the float32 value of ``v`` (C's ``0.1f`` etc.)."""
    return float(np.float32(v))


_HALF_DOWN = float(np.nextafter(np.float32(0.5), np.float32(0)))  # 0.49999997f


def roundf(v: torch.Tensor) -> torch.Tensor:
    """C roundf (half away from zero; torch.round is half to even) for float32 tensors:
    ``trunc(v + sign(v) * 0.49999997f)``.  Adding 0.5 itself would round 0.49999997 up;
    with its predecessor every float32 rounds right (checked for all |v| <= 300; past
    2**23 every float is an integer and the sum rounds back to it)."""
    return torch.trunc(v + v.sign() * _HALF_DOWN)


def seqsum(t: torch.Tensor, start_zero: bool = True) -> torch.Tensor:
    """Sum over dim 0 one row after the other, like C's ``s = 0; for (i…) s += t[i];``.

    ``start_zero`` adds the rows to +0.0 (so a leading -0.0 sums to +0.0 like in C).
    (n, B) -> (B,)
    """
    rows = t.unbind(0)
    acc = rows[0] + 0.0 if start_zero else rows[0].clone()
    for r in rows[1:]:
        acc += r
    return acc


def first_min(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``m = x[0]; for (i…) if (x[i] < m) m = x[i];`` along ``dim``: the minimum, and where it
    is zero, the sign of the first zero (C keeps the first of equal values)."""
    m = x.amin(dim)
    return _fix_zero_sign(x, m, dim)


def first_max(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Like :func:`first_min` for ``if (x[i] > m) m = x[i];``."""
    m = x.amax(dim)
    return _fix_zero_sign(x, m, dim)


def _fix_zero_sign(x: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    z = m == 0
    if not bool(z.any()):
        return m
    idx = (x == 0).to(torch.uint8).argmax(dim, keepdim=True)  # first zero
    return torch.where(z, x.gather(dim, idx).squeeze(dim), m)


def signed_absmax(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``amax = 0, max = 0; for (i…) if (amax < |x[i]|) { amax = |x[i]|; max = x[i]; }``

    Returns (amax, max): the largest magnitude and the signed value of its first
    occurrence (+0.0 when every value is zero).
    """
    ax = x.abs()
    amax, idx = ax.max(dim, keepdim=True)  # first maximal index
    mx = x.gather(dim, idx)
    amax, mx = amax.squeeze(dim), mx.squeeze(dim)
    mx = torch.where(amax > 0, mx, torch.zeros_like(mx))
    return amax, mx
