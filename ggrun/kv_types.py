"""KV cache data types: llama.cpp's ``-ctk/--cache-type-k`` and ``-ctv/--cache-type-v``.

How each type is stored in ``KVCache.k`` / ``KVCache.v`` (one row = one position's n_head_kv
heads of head_dim values):

    f16   float16 [..., n_head_kv, head_dim]          (the default, as llama.cpp)
    f32   float32 [..., n_head_kv, head_dim]          llama.cpp casts F32 K/V to F16 before its
                                                      flash attention, so the attention sees the
                                                      f16 values: same numerics as f16, twice the RAM
    q8_0  uint8   [..., n_head_kv, head_dim/32 * 34]  ggml's block_q8_0 run, byte for byte: per 32
                                                      values an f16 scale d, then 32 int8 quants

q8_0 rows are quantized as ggml-cpu's ``quantize_row_q8_0`` (what llama.cpp's set_rows into a
q8_0 cache runs): amax over the block, d = amax/127 (stored as f16, round to nearest even),
id = 127/amax, q = round-half-even(x·id). ``quantize_q8_0`` below does exactly that in torch
(on the CPU or a GPU); the C attention (ggrun/cpu/ops.c) has the same quantizer.

The storage dtype says the type (uint8: q8_0), so a backend's attention knows what it got.

Attention rotation: with a quantized K cache llama.cpp (llama_kv_cache, llama-graph's build_attn)
multiplies q and k, after RoPE, by an orthonormal Walsh-Hadamard matrix (runs of n_rot_k values:
64, doubled while it divides head_dim), and with a quantized V cache v before it is stored, and
the attention output after, by the 64×64 one — q·k and the output are unchanged in exact
arithmetic, the quantization error is spread. Only for head_dim % 64 == 0; the environment
variable LLAMA_ATTN_ROT_DISABLE=1 turns it off, as in llama.cpp. ggml-cpu computes it as a fast
Walsh-Hadamard transform (``fwht``: scale, then butterflies), reproduced here exactly.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .errors import BadArgumentError

# ggml type ids (the C attention takes these)
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
CACHE_TYPES = ("f32", "f16", "q8_0")          # what ggrun runs
LLAMA_CPP_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")  # what llama.cpp takes
QK8_0, Q8_0_BYTES = 32, 34


def parse_cache_type(name: str | None, flag: str = "-ctk/--cache-type-k") -> str:
    """A cache type name (llama.cpp's spelling, case-insensitive) → its canonical name;
    BadArgumentError (one line) for anything ggrun can't run. None → "f16"."""
    if name is None:
        return "f16"
    t = str(name).strip().lower()
    if t in CACHE_TYPES:
        return t
    allowed = ", ".join(CACHE_TYPES)
    what = f"{flag}{name}" if flag.endswith("=") else f"{flag} ({name})" if "=" in flag else f"{flag} {name}"
    if t in LLAMA_CPP_TYPES:
        raise BadArgumentError(f"{what}: this cache type is not supported by ggrun (use one of: {allowed})")
    raise BadArgumentError(f"{what}: unknown cache type (use one of: {allowed})")


GGML_TYPE_IDS = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 20: "iq4_nl", 30: "bf16"}


def api_cache_type(value, arg: str = "type_k") -> str:
    """llama-cpp-python's type_k/type_v (a ggml type id, e.g. GGML_TYPE_Q8_0 = 8, or a name;
    None: f16) → a cache type name; BadArgumentError for what ggrun can't run."""
    if value is None:
        return "f16"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadArgumentError(f"{arg}={value!r}: expected a ggml type id (e.g. 8 for q8_0) or a name")
    if isinstance(value, int):
        if value not in GGML_TYPE_IDS:
            raise BadArgumentError(f"{arg}={value}: not a KV cache type (use one of: {', '.join(CACHE_TYPES)})")
        return parse_cache_type(GGML_TYPE_IDS[value], f"{arg}={value}")
    return parse_cache_type(value, f"{arg}=")


def storage(type_name: str, head_dim: int) -> tuple[int, torch.dtype]:
    """(last dimension, dtype) of a cache row's per-head storage for ``type_name``."""
    if type_name == "q8_0":
        if head_dim % QK8_0:
            raise BadArgumentError(f"cache type q8_0 needs a head size that is a multiple of 32 "
                                   f"(this model: {head_dim})")
        return head_dim // QK8_0 * Q8_0_BYTES, torch.uint8
    return head_dim, {"f16": torch.float16, "f32": torch.float32}[type_name]


def bytes_per_value(type_name: str) -> float:
    """Bytes per cached value: f32 4, f16 2, q8_0 34/32."""
    return {"f32": 4.0, "f16": 2.0, "q8_0": Q8_0_BYTES / QK8_0}[type_name]


def type_of(t) -> str:
    """The cache type a storage tensor (or ``LayerKV``) holds, from its dtype."""
    return {torch.uint8: "q8_0", torch.float16: "f16", torch.float32: "f32"}[t.dtype]


def ggml_id(type_name: str) -> int:
    return {"f32": GGML_F32, "f16": GGML_F16, "q8_0": GGML_Q8_0}[type_name]


def quantize_q8_0(x: torch.Tensor) -> torch.Tensor:
    """x [..., n] (n a multiple of 32) → uint8 [..., n/32*34]: ggml's quantize_row_q8_0 bit for bit.

    Both divisions are true divisions of tensors (torch turns a division by a Python scalar into a
    multiplication by its reciprocal on some devices, which rounds differently)."""
    *lead, n = x.shape
    nb = n // QK8_0
    xb = x.float().reshape(*lead, nb, QK8_0)                            # [..., nb, 32]
    amax = xb.abs().amax(-1, keepdim=True)                              # [..., nb, 1]
    c127 = torch.full_like(amax, 127.0)
    d = torch.div(amax, c127)
    inv = torch.where(amax != 0, torch.div(c127, torch.where(amax != 0, amax, c127)), torch.zeros_like(amax))
    q = torch.round(xb * inv).to(torch.int8)                            # round half to even
    out = torch.empty(*lead, nb, Q8_0_BYTES, dtype=torch.uint8, device=x.device)
    out[..., :2] = d.half().view(torch.uint8)                           # f16 d, little-endian
    out[..., 2:] = q.view(torch.uint8)
    return out.reshape(*lead, nb * Q8_0_BYTES)


def dequantize_q8_0(b: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [..., nb*34] → [..., nb*32]: q·d in f32 (ggml's dequantize_row_q8_0), then ``dtype``."""
    *lead, nbytes = b.shape
    nb = nbytes // Q8_0_BYTES
    blk = b.reshape(*lead, nb, Q8_0_BYTES)
    d = blk[..., :2].contiguous().view(torch.float16).float()          # [..., nb, 1]
    q = blk[..., 2:].contiguous().view(torch.int8).float()              # [..., nb, 32]
    return (q * d).reshape(*lead, nb * QK8_0).to(dtype)


def to_storage(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """f32 values [..., head_dim] → the storage of ``like``'s type (f16/f32: a cast, RNE)."""
    if like.dtype == torch.uint8:
        return quantize_q8_0(x)
    return x.to(like.dtype)


def to_float(t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Storage [..., row] of any cache type → values [..., head_dim] as ``dtype``."""
    if t.dtype == torch.uint8:
        return dequantize_q8_0(t, dtype)
    return t.to(dtype)


def attention_operand(t: torch.Tensor) -> torch.Tensor:
    """What llama.cpp's flash attention sees of a cache view: f32 is cast to f16 first
    (llama-graph's build_attn_mha); f16 and q8_0 go as they are."""
    return t.half() if t.dtype == torch.float32 else t


def rotation_sizes(type_k: str, type_v: str, head_dim: int) -> tuple[int, int]:
    """(n_rot_k, n_rot_v): llama.cpp's Hadamard rotation run lengths for these cache types
    (0: no rotation), as llama_kv_cache's constructor picks them."""
    off = os.environ.get("LLAMA_ATTN_ROT_DISABLE", "")
    if off.strip() and off.strip() != "0":
        return 0, 0
    rk = rv = 0
    if type_k == "q8_0" and head_dim % 64 == 0:
        rk = 64
        while head_dim % (2 * rk) == 0:
            rk *= 2
    if type_v == "q8_0" and head_dim % 64 == 0:
        rv = 64
    return rk, rv


def fwht(x: torch.Tensor, n: int) -> torch.Tensor:
    """x [..., D] (D a multiple of n, n a power of 2) → each run of n values times the
    orthonormal Hadamard matrix, computed as ggml-cpu's ggml_compute_forward_fwht does
    (x·(1/sqrtf(n)), then butterflies u+v, u−v for len = 1, 2, .., n/2): the same float
    operations, so the same bits, on any device. Its own inverse."""
    scale = float(np.float32(1.0) / np.sqrt(np.float32(n)))
    shape = x.shape
    y = x.float().reshape(-1, n) * scale                                # [R, n]
    h = 1
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)                              # pairs (i + j, i + h + j)
        u, v = y[:, :, 0], y[:, :, 1]
        y = torch.stack((u + v, u - v), dim=2)
        h *= 2
    return y.reshape(shape)
