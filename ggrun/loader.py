"""``load()``: a GGUF file → a ready ``Engine`` (config, weights, tokenizer, backend, KV cache)."""

from __future__ import annotations

import time

from .config import ModelConfig
from .engine import Engine
from .errors import BadArgumentError, ContextError, UnsupportedModelError
from .model import LlamaModel
from .weights import LlamaWeights

DEFAULT_CTX = 4096


def available_memory() -> int:
    """Bytes of memory the OS says are available (MemAvailable), or 0 if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load(model: str | None = None, n_ctx: int = DEFAULT_CTX, n_gpu_layers: int = 0, n_threads: int | None = None,
         n_seq: int = 1, n_batch: int = 512) -> Engine:
    """Open a GGUF model and return an ``Engine`` ready to generate.

    model: a .gguf path, a folder, a Hub repo or ``repo:QUANT`` (None: the embedded default,
        SmolLM2-135M-Instruct Q4_1).
    n_ctx: context length in tokens (0: the model's training context).
    n_gpu_layers: layers to run on the GPU (llama.cpp's -ngl); 0 runs all on the CPU.
    n_seq: how many sequences the KV cache holds at once (slots).
    """
    from .hub import open_gguf, resolve_model

    t0 = time.perf_counter()
    model = resolve_model(model)          # None → the embedded default; repo, repo:QUANT, folder
    if n_ctx < 0:
        raise BadArgumentError(f"-c/--ctx-size {n_ctx}: must be ≥ 0")
    if n_batch <= 0:
        raise BadArgumentError(f"-b/--batch-size {n_batch}: must be > 0")
    f = open_gguf(model)                  # split files (-00001-of-0000N) load together
    if not f.tensors:
        raise UnsupportedModelError(f"{f.path}: the file has no tensors (a vocab-only GGUF?)")
    cfg = ModelConfig.from_gguf(f)
    n_ctx = n_ctx or cfg.n_ctx_train
    kv_bytes = cfg.kv_cache_bytes(n_ctx, n_seq)
    avail = available_memory()
    if avail and kv_bytes > avail:
        raise ContextError(
            f"-c {n_ctx}: the KV cache needs {kv_bytes / 2**30:.1f} GiB but only {avail / 2**30:.1f} GiB of memory "
            f"is available; use a smaller -c/--ctx-size")
    from .quants import SUPPORTED_TYPES, type_name

    for t in f.tensors.values():
        if t.ggml_type not in SUPPORTED_TYPES:
            raise UnsupportedModelError(f"{f.path}: tensor '{t.name}' has type {type_name(t.ggml_type)}, which ggrun can't run")
    weights = LlamaWeights.from_gguf(f, cfg.n_layer)
    from .tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(f)
    backend = _backend(n_gpu_layers, n_threads)
    if backend.name == "CUDA" and 0 <= n_gpu_layers <= cfg.n_layer:
        # partial offload (llama.cpp's -ngl N): the last N layers on the GPU, the rest and the
        # output layer (it goes up only when N > n_layer) on the CPU backend
        from .backends.cpu import CPUBackend
        from .model import offload_plan

        cpu = CPUBackend(n_threads)
        layer_be, out_be = offload_plan(cfg.n_layer, n_gpu_layers, cpu, backend)
        _upload(weights, backend, f.path, layers=[il for il, b in enumerate(layer_be) if b is backend],
                output=out_be is backend)
        lm = LlamaModel(cfg, weights, cpu, max_pos=n_ctx, layer_backends=layer_be, output_backend=out_be)
    else:
        if backend.name == "CUDA":
            _upload(weights, backend, f.path)
        lm = LlamaModel(cfg, weights, backend, max_pos=n_ctx)
    eng = Engine(lm, tok, n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch, path=f.path)
    eng.gguf = f
    eng.load_ms = (time.perf_counter() - t0) * 1e3
    return eng


def _backend(n_gpu_layers: int, n_threads: int | None):
    import logging

    from .backends.cpu import CPUBackend

    if n_gpu_layers:
        import torch

        if not torch.cuda.is_available():
            logging.getLogger("ggrun").warning(
                "ggrun: -ngl %d asked for, but no GPU is available: running on the CPU", n_gpu_layers)
        else:
            try:
                import triton  # noqa: F401
            except ImportError:
                logging.getLogger("ggrun").warning(
                    "ggrun: -ngl %d needs the 'triton' package (pip install 'ggrun[gpu]'): running on the CPU",
                    n_gpu_layers)
                return CPUBackend(n_threads)
            from .backends.cuda import CUDABackend

            return CUDABackend("cuda")
    return CPUBackend(n_threads)


def _upload(weights: LlamaWeights, backend, path: str, layers: list[int] | None = None, output: bool = True) -> None:
    """The matrices of ``layers`` (default all) and, with ``output``, the output layer and the
    embedding onto the GPU now (re-laid out, same bytes), the norm vectors with them, so a
    model that doesn't fit fails here, saying how many layers would."""
    import torch

    dev = backend.device
    ids = range(len(weights.layers)) if layers is None else layers
    done = 0
    try:
        if output:
            backend.upload([weights.output] + ([weights.token_embd] if layers is None else []))
        for il in ids:
            L = weights.layers[il]
            backend.upload([L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down])
            L.attn_norm, L.ffn_norm = L.attn_norm.to(dev), L.ffn_norm.to(dev)
            done += 1
        if output:
            weights.output_norm = weights.output_norm.to(dev)
    except torch.OutOfMemoryError:
        free, total = torch.cuda.mem_get_info(dev)
        raise ContextError(
            f"{path}: the model doesn't fit in GPU memory ({total / 2**30:.1f} GiB): {done} of "
            f"{len(ids)} layers were uploaded; use -ngl {max(0, done - 1)} or less") from None
