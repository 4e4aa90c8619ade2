"""ggml tensor codecs: dequantize and quantize GGUF tensor data, bit for bit like ggml.

>>> from ggrun.quants import dequantize, get_rows, quantize, GGMLType
>>> w = dequantize(info.data, info.ggml_type)            # (rows, row_elems) float32
>>> e = get_rows(info.data, info.ggml_type, ids)         # embedding lookup: only those rows
>>> q = quantize(w, GGMLType.Q4_K)                       # (rows, row_bytes) uint8

Data is (…, row_bytes) uint8: a torch tensor (CPU or CUDA; the result lives on the same
device) or a numpy array such as a read-only np.memmap (wrapped without a copy).
Type ids are ggml's (``gguf.GGMLQuantizationType``).

Dequantization equals ggml's dequantize_row_* (and gguf-py) bit for bit. Quantization
follows what ``llama-quantize`` runs without an importance matrix
(ggml_quantize_chunk → quantize_row_*_ref), emulated in float32 op by op.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Callable

import numpy as np
import torch

from ..errors import BadArgumentError, UnsupportedModelError
from . import floats, kquants, legacy
from ._common import as_u8_tensor

__all__ = [
    "GGMLType", "SUPPORTED_TYPES", "QUANTIZE_TYPES", "block_size", "type_size", "row_bytes",
    "row_elems", "type_name", "dequantize", "get_rows", "quantize",
]


class GGMLType(IntEnum):
    """The ggml type ids ggrun can decode (values as in ggml.h / gguf.GGMLQuantizationType)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    BF16 = 30


# type -> (block_size elements, type_size bytes, dequantize blocks (N, type_size) -> (N, block) f32)
_DEQUANT: dict[int, tuple[int, int, Callable[[torch.Tensor], torch.Tensor] | None]] = {
    GGMLType.F32: (1, 4, None),
    GGMLType.F16: (1, 2, None),
    GGMLType.BF16: (1, 2, None),
    GGMLType.Q4_0: (32, 18, legacy.dequant_q4_0),
    GGMLType.Q4_1: (32, 20, legacy.dequant_q4_1),
    GGMLType.Q5_0: (32, 22, legacy.dequant_q5_0),
    GGMLType.Q5_1: (32, 24, legacy.dequant_q5_1),
    GGMLType.Q8_0: (32, 34, legacy.dequant_q8_0),
    GGMLType.Q2_K: (256, 84, kquants.dequant_q2_k),
    GGMLType.Q3_K: (256, 110, kquants.dequant_q3_k),
    GGMLType.Q4_K: (256, 144, kquants.dequant_q4_k),
    GGMLType.Q5_K: (256, 176, kquants.dequant_q5_k),
    GGMLType.Q6_K: (256, 210, kquants.dequant_q6_k),
}

SUPPORTED_TYPES: frozenset[int] = frozenset(int(t) for t in _DEQUANT)
QUANTIZE_TYPES: frozenset[int] = SUPPORTED_TYPES  # every supported type can also be written

_FLOAT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
_CPU_CHUNK = 1 << 24  # elements decoded per step (bounds the temporaries)
_GPU_CHUNK = 1 << 26


def type_name(ggml_type: int) -> str:
    """'Q4_K', 'F16', … (any type gguf knows); ``type<N>`` for an unknown id."""
    try:
        from gguf import GGMLQuantizationType

        return GGMLQuantizationType(int(ggml_type)).name
    except (ValueError, ImportError):
        return f"type{int(ggml_type)}"


def _sizes(ggml_type: int) -> tuple[int, int]:
    t = int(ggml_type)
    if t in _DEQUANT:
        return _DEQUANT[t][0], _DEQUANT[t][1]
    try:  # a type ggrun can't decode still has a known size (useful to skip over it)
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        return GGML_QUANT_SIZES[GGMLQuantizationType(t)]
    except (ValueError, KeyError, ImportError):
        raise UnsupportedModelError(f"unknown ggml tensor type {t}") from None


def block_size(ggml_type: int) -> int:
    """Elements per block (1 for the float types, 32 or 256 for quantized ones)."""
    return _sizes(ggml_type)[0]


def type_size(ggml_type: int) -> int:
    """Bytes per block."""
    return _sizes(ggml_type)[1]


def row_bytes(ggml_type: int, n: int) -> int:
    """Bytes of a row of ``n`` elements (``n`` must be a multiple of the block size)."""
    bs, ts = _sizes(ggml_type)
    if n % bs:
        raise BadArgumentError(f"a row of {n} elements is not a multiple of the {type_name(ggml_type)} block size {bs}")
    return n // bs * ts


def row_elems(ggml_type: int, nbytes: int) -> int:
    """Elements of a row of ``nbytes`` bytes."""
    bs, ts = _sizes(ggml_type)
    if nbytes % ts:
        raise BadArgumentError(f"a row of {nbytes} bytes is not a whole number of {type_name(ggml_type)} blocks ({ts} bytes)")
    return nbytes // ts * bs


def _check_supported(ggml_type: int, what: str = "dequantize") -> int:
    t = int(ggml_type)
    if t not in _DEQUANT:
        raise UnsupportedModelError(
            f"ggml tensor type {type_name(t)} (id {t}) is not supported by ggrun "
            f"(can {what}: {', '.join(type_name(s) for s in sorted(SUPPORTED_TYPES))})"
        )
    return t


def dequantize(data, ggml_type: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Decode (…, row_bytes) uint8 blocks to (…, row_elems) floats of ``dtype``.

    ``data``: torch uint8 tensor (CPU or CUDA) or numpy uint8 array / memmap.
    ``device``: where to decode (default: the tensor's device; CPU for numpy input).
    Returns a new tensor (never a view of ``data``).  Values are computed in float32
    exactly like ggml, then cast to ``dtype``.
    """
    t_id = _check_supported(ggml_type)
    t = as_u8_tensor(data, device)
    if t.dim() == 0:
        t = t.reshape(1)
    if t_id in _FLOAT_TYPES:
        return floats.dequantize_rows(t, t_id, dtype)
    bs, ts, fn = _DEQUANT[t_id]
    lead, nb = t.shape[:-1], t.shape[-1]
    if nb % ts:
        raise BadArgumentError(f"{type_name(t_id)} data rows of {nb} bytes are not whole blocks of {ts} bytes")
    blocks = t.reshape(-1, ts)                               # (N, type_size)
    n = blocks.shape[0]
    # Big tensors in steps of 16M (CPU) or 64M (GPU) elements: few large ops, bounded temporaries.
    step = max(1, (_CPU_CHUNK if blocks.device.type == "cpu" else _GPU_CHUNK) // bs)
    if n <= step:
        out = fn(blocks)                                     # (N, block_size) float32
        out = out if dtype == torch.float32 else out.to(dtype)
    else:
        out = torch.empty(n, bs, dtype=dtype, device=blocks.device)
        for i in range(0, n, step):
            out[i : i + step] = fn(blocks[i : i + step])
    return out.reshape(*lead, nb // ts * bs)


def get_rows(data, ggml_type: int, ids, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Dequantize only rows ``ids`` of a (rows, row_bytes) matrix: the embedding lookup.

    ``ids``: integer tensor (any shape) or sequence.  Returns ``ids.shape + (row_elems,)``,
    on ``data``'s device for a torch tensor, on ``ids``' device for numpy data (only the
    selected rows' bytes are copied and moved).
    """
    _check_supported(ggml_type)
    ids_t = ids if isinstance(ids, torch.Tensor) else torch.as_tensor(np.asarray(ids), dtype=torch.long)
    if ids_t.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise BadArgumentError(f"get_rows: ids must be integers, got {ids_t.dtype}")
    flat = ids_t.reshape(-1).long()
    if isinstance(data, torch.Tensor):
        if data.dim() != 2:
            raise BadArgumentError(f"get_rows: data must be (rows, row_bytes), got shape {tuple(data.shape)}")
        n_rows = data.shape[0]
        if flat.device.type == "cpu":
            _check_ids(flat, n_rows)
        sel = data.index_select(0, flat.to(data.device))
    else:
        a = np.asarray(data)
        if a.ndim != 2:
            raise BadArgumentError(f"get_rows: data must be (rows, row_bytes), got shape {a.shape}")
        idx = flat.cpu()
        _check_ids(idx, a.shape[0])
        sel = as_u8_tensor(a[idx.numpy()], ids_t.device if ids_t.device.type != "cpu" else None)
    out = dequantize(sel, ggml_type, dtype)
    return out.reshape(*ids_t.shape, out.shape[-1])


def _check_ids(flat: torch.Tensor, n_rows: int) -> None:
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= n_rows):
        bad = flat[(flat < 0) | (flat >= n_rows)][0]
        raise BadArgumentError(f"get_rows: row id {int(bad)} is out of range (the matrix has {n_rows} rows)")


def quantize(x, ggml_type: int) -> torch.Tensor:
    """Encode float32 (…, K) to (…, row_bytes(K)) uint8 blocks, like llama-quantize without an imatrix.

    Runs on ``x``'s device (vectorized over all blocks; much faster on a GPU) and gives
    the same bytes on any device.  Non-float32 input is converted to float32 first.
    Blocks holding NaN or inf come out unspecified (llama.cpp's are garbage too).
    """
    t_id = _check_supported(ggml_type, "quantize")
    if not isinstance(x, torch.Tensor):
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32)))
    x = x.to(torch.float32)
    if x.dim() == 0:
        x = x.reshape(1)
    k = x.shape[-1]
    rb = row_bytes(t_id, k)
    if t_id in _FLOAT_TYPES:
        return floats.quantize_rows(x, t_id).reshape(*x.shape[:-1], rb)
    from .quantizers import quantize_blocks

    bs = block_size(t_id)
    blocks = x.contiguous().reshape(-1, bs)                  # (N, block_size)
    return quantize_blocks(blocks, t_id).reshape(*x.shape[:-1], rb)
