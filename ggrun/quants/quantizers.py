"""Block quantization dispatch: blocks of float32 -> ggml blocks, in memory-bounded chunks."""

from __future__ import annotations

from typing import Callable

import torch

from . import kquants_quantize as kq
from . import legacy

# ggml type id -> (elements per block, bytes per block, quantize (N, block) f32 -> (N, bytes) u8)
QUANTIZERS: dict[int, tuple[int, int, Callable[[torch.Tensor], torch.Tensor]]] = {
    2: (32, 18, legacy.quant_q4_0),
    3: (32, 20, legacy.quant_q4_1),
    6: (32, 22, legacy.quant_q5_0),
    7: (32, 24, legacy.quant_q5_1),
    8: (32, 34, legacy.quant_q8_0),
    10: (256, 84, kq.quant_q2_k),
    11: (256, 110, kq.quant_q3_k),
    12: (256, 144, kq.quant_q4_k),
    13: (256, 176, kq.quant_q5_k),
    14: (256, 210, kq.quant_q6_k),
}

# Elements quantized per step. The k-quant searches keep ~10 float temporaries of the
# chunk's size; on the CPU a chunk whose temporaries stay in cache runs ~1.7x faster.
CPU_CHUNK = 1 << 18
GPU_CHUNK = 1 << 24


def quantize_blocks(blocks: torch.Tensor, ggml_type: int) -> torch.Tensor:
    """blocks (N, block_size) float32 -> (N, type_size) uint8."""
    bs, ts, fn = QUANTIZERS[int(ggml_type)]
    n = blocks.shape[0]
    step = max(1, (CPU_CHUNK if blocks.device.type == "cpu" else GPU_CHUNK) // bs)
    if n <= step:
        return fn(blocks)
    out = torch.empty(n, ts, dtype=torch.uint8, device=blocks.device)
    for i in range(0, n, step):
        out[i : i + step] = fn(blocks[i : i + step])
    return out
