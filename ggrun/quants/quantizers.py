"""Block quantization dispatch: blocks of float32 -> ggml blocks, in memory-bounded chunks.

CPU tensors go to the C quantizers of :mod:`ggrun.cpu` (``quantize.c``: llama.cpp's reference
quantizers, same bytes, ~10-100x faster than the torch ops here) when they can be built; the
vectorized torch code (:mod:`.legacy`, :mod:`.kquants_quantize`) serves GPU tensors and is the
fallback when there is no C compiler (or after ``ggrun.cpu.configure(enabled=False)``).
"""

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


# Elements per call of the C quantizers: it needs no temporaries, so the chunks only bound the
# time between two GIL re-acquisitions (the call releases the GIL) and cost nothing measurable.
C_CHUNK = 1 << 24

_c_ok: bool | None = None


def _c_quantizers() -> bool:
    """True when ggrun.cpu's compiled quantizers are available (built on first use)."""
    global _c_ok
    if _c_ok is None:
        try:
            from .. import cpu

            _c_ok = cpu.available()
        except Exception:  # noqa: BLE001 (any build/load problem: use the torch path)
            _c_ok = False
    return _c_ok


def quantize_blocks(blocks: torch.Tensor, ggml_type: int, n_threads: int | None = None) -> torch.Tensor:
    """blocks (N, block_size) float32 -> (N, type_size) uint8.

    On the CPU with the C quantizers available: ``n_threads`` threads (default
    ``torch.get_num_threads()``); otherwise the torch path (``n_threads`` is ignored).
    """
    bs, ts, fn = QUANTIZERS[int(ggml_type)]
    n = blocks.shape[0]
    if blocks.device.type == "cpu" and blocks.dtype == torch.float32 and _c_quantizers():
        from ..cpu import quantize_rows

        blocks = blocks.contiguous()
        step = max(1, C_CHUNK // bs)
        if n <= step:
            return quantize_rows(blocks, int(ggml_type), n_threads)
        out = torch.empty(n, ts, dtype=torch.uint8)
        for i in range(0, n, step):
            quantize_rows(blocks[i : i + step], int(ggml_type), n_threads, out=out[i : i + step])
        return out
    if blocks.device.type == "cuda":
        y = quantize_blocks_gpu(blocks, ggml_type)
        if y is not None:
            return y
    step = max(1, (CPU_CHUNK if blocks.device.type == "cpu" else GPU_CHUNK) // bs)
    if n <= step:
        return fn(blocks)
    out = torch.empty(n, ts, dtype=torch.uint8, device=blocks.device)
    for i in range(0, n, step):
        out[i : i + step] = fn(blocks[i : i + step])
    return out


_triton_q = None   # ggrun.kernels.quantize_k.quantize_blocks_triton, False when Triton is missing


def quantize_blocks_gpu(blocks: torch.Tensor, ggml_type: int) -> torch.Tensor | None:
    """K-quant super-blocks (N, 256) f32/f16/bf16 on a CUDA device → (N, type_size) uint8 through
    the fused Triton quantizers (ggrun.kernels.quantize_k: the same bytes as llama.cpp's
    reference, one launch); None when the type or the machine can't take that route."""
    global _triton_q
    if _triton_q is None:
        try:
            from ..kernels.quantize_k import quantize_blocks_triton

            _triton_q = quantize_blocks_triton
        except ImportError:
            _triton_q = False
    if not _triton_q:
        return None
    return _triton_q(blocks, int(ggml_type))
