"""F32, F16 and BF16: (de)quantization of the plain float types.

Dequantization works on whole rows (the "block" is one element); the byte layout is
little-endian IEEE, read with dtype views.  Quantization follows ggml_quantize_chunk:
F16 through ggml_fp32_to_fp16_row (round to nearest even), BF16 through
ggml_fp32_to_bf16_row_ref (round to nearest even, NaN forced quiet).
"""

from __future__ import annotations

import torch

from ._common import fp16_bits, fp32_to_bf16_bits

_VIEW = {0: torch.float32, 1: torch.float16, 30: torch.bfloat16}  # ggml type -> storage dtype


def dequantize_rows(t: torch.Tensor, ggml_type: int, dtype: torch.dtype) -> torch.Tensor:
    """(..., row_bytes) uint8 -> (..., row_bytes / item) ``dtype``; always a new tensor."""
    storage = _VIEW[ggml_type]
    t = t.contiguous()
    if t.dim() == 0:
        t = t.reshape(1)
    if t.data_ptr() % storage.itemsize:  # a misaligned view can't be reinterpreted
        t = t.clone()
    v = t.view(storage)  # (..., row_elems)
    out = v.to(dtype)
    return out.clone() if out.data_ptr() == v.data_ptr() else out


def quantize_rows(x: torch.Tensor, ggml_type: int) -> torch.Tensor:
    """float32 (..., K) -> uint8 (..., K * item)."""
    x = x.contiguous()
    if ggml_type == 0:
        bits = x.clone()
    elif ggml_type == 1:
        bits = fp16_bits(x)
    else:
        bits = fp32_to_bf16_bits(x)
    return bits.view(torch.uint8)
