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
         n_seq: int = 1, n_batch: int = 512, main_gpu: int = 0, tensor_split: list[float] | None = None,
         split_mode: str = "layer", cache_type_k: str = "f16", cache_type_v: str = "f16",
         warmup: bool = True) -> Engine:
    """Open a GGUF model and return an ``Engine`` ready to generate.

    model: a .gguf path, a folder, a Hub repo or ``repo:QUANT`` (None: the embedded default,
        SmolLM2-135M-Instruct Q4_1).
    n_ctx: context length in tokens (0: the model's training context).
    n_gpu_layers: layers to run on the GPU (llama.cpp's -ngl: the output layer and the last
        N - 1 repeating layers; -1 or more than the model has: all); 0 runs all on the CPU.
    n_seq: how many sequences the KV cache holds at once (slots).
    main_gpu, tensor_split, split_mode: llama.cpp's -mg, -ts, -sm. With several GPUs and
        split_mode "layer" the offloaded layers are cut over the GPUs by ``tensor_split``
        (default: by free memory, as llama.cpp); "none" puts them all on ``main_gpu``.
    cache_type_k, cache_type_v: the KV cache types, llama.cpp's -ctk/-ctv: "f16" (default),
        "q8_0" (about half the memory; llama.cpp's numerics) or "f32".
    warmup: with GPU layers, a warm-up run before returning (``warm_up``; llama.cpp's, which
        --no-warmup skips), so that the first generation's timings are the steady state's.
    """
    from .hub import open_gguf, resolve_model

    t0 = time.perf_counter()
    model = resolve_model(model)          # None → the embedded default; repo, repo:QUANT, folder
    if n_ctx < 0:
        raise BadArgumentError(f"-c/--ctx-size {n_ctx}: must be ≥ 0")
    if n_batch <= 0:
        raise BadArgumentError(f"-b/--batch-size {n_batch}: must be > 0")
    from .kv_types import parse_cache_type, storage

    cache_type_k = parse_cache_type(cache_type_k, "-ctk/--cache-type-k")
    cache_type_v = parse_cache_type(cache_type_v, "-ctv/--cache-type-v")
    f = open_gguf(model)                  # split files (-00001-of-0000N) load together
    if not f.tensors:
        raise UnsupportedModelError(f"{f.path}: the file has no tensors (a vocab-only GGUF?)")
    cfg = ModelConfig.from_gguf(f)
    n_ctx = n_ctx or cfg.n_ctx_train
    for t in (cache_type_k, cache_type_v):
        storage(t, cfg.head_dim)          # q8_0 needs head_dim % 32 == 0 (one clear line otherwise)
    kv_bytes = cfg.kv_cache_bytes(n_ctx, n_seq, cache_type_k, cache_type_v)
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
    from .backends.cpu import CPUBackend

    gpus, split = _gpu_backends(n_gpu_layers, main_gpu, tensor_split, split_mode,
                                need_bytes=f.tensor_bytes + kv_bytes)
    cpu = CPUBackend(n_threads)
    all_on_gpu = n_gpu_layers < 0 or n_gpu_layers > cfg.n_layer
    if not gpus:
        lm = LlamaModel(cfg, weights, cpu, max_pos=n_ctx)
    elif all_on_gpu and len(gpus) == 1:
        backend = gpus[0]
        lm = LlamaModel(cfg, weights, backend, max_pos=n_ctx)
        _upload(weights, backend, f.path)
        from .backends.cuda_decode import use_graphs

        use_graphs(lm, weights)                           # decode steps and prompts replay CUDA graphs
    else:
        # llama.cpp's -ngl N: the output layer and the last N - 1 layers on the GPU(s), cut over
        # several GPUs by the split; the embedding lookup and the other layers on the CPU
        from .model import offload_plan

        layer_be, out_be = offload_plan(cfg.n_layer, n_gpu_layers, cpu, gpus, split)
        for g in gpus:
            mine = [il for il, b in enumerate(layer_be) if b is g]
            if mine or out_be is g:
                _upload(weights, g, f.path, layers=mine, output=out_be is g)
        lm = LlamaModel(cfg, weights, cpu, max_pos=n_ctx, layer_backends=layer_be, output_backend=out_be)
    eng = Engine(lm, tok, n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch, path=f.path,
                 type_k=cache_type_k, type_v=cache_type_v)
    eng.gguf = f
    eng.load_ms = (time.perf_counter() - t0) * 1e3
    if warmup and gpus:
        warm_up(eng)
    return eng


def warm_up(eng: Engine) -> None:
    """llama.cpp's warm-up run: a two-token prompt (bos, eos) and one more step, then slot 0 is
    emptied. On a GPU this compiles the Triton kernels and captures the prompt's and the step's
    CUDA graphs (seconds on a large model) before the user's first prompt instead of inside it."""
    if eng.n_ctx < 3:
        return
    tok = eng.tokenizer
    bos = tok.bos_id if tok.bos_id is not None else 0
    eos = tok.eos_id if tok.eos_id is not None else bos
    eng.eval([bos, eos])
    eng.eval([bos])
    eng.reset(0)


def _gpu_backends(n_gpu_layers: int, main_gpu: int = 0, tensor_split=None, split_mode: str = "layer",
                  need_bytes: int = 0):
    """The CUDA backends -ngl asks for and the layer split over them: ([] , None) for a CPU run
    (with a warning when -ngl was asked for but there is no GPU or no Triton).

    Several GPUs without -ts: a model (weights + KV, ``need_bytes``) that fits on ``main_gpu``
    with room to spare runs there alone, where its decode steps replay one CUDA graph; only a
    model that doesn't fit is cut by free memory as llama.cpp does. (llama.cpp always cuts;
    ggrun's layer split runs the eager forward, much slower per token than one GPU's graph.)"""
    import logging

    log = logging.getLogger("ggrun")
    if split_mode not in ("none", "layer", "row"):
        raise BadArgumentError(f"-sm/--split-mode {split_mode!r}: expected none, layer or row")
    if not n_gpu_layers:
        return [], None
    import torch

    if not torch.cuda.is_available():
        log.warning("ggrun: -ngl %d asked for, but no GPU is available: running on the CPU", n_gpu_layers)
        return [], None
    try:
        import triton  # noqa: F401
    except ImportError:
        log.warning("ggrun: -ngl %d needs the 'triton' package (pip install 'ggrun[gpu]'): running on the CPU",
                    n_gpu_layers)
        return [], None
    from .backends.cuda import CUDABackend

    n_dev = torch.cuda.device_count()
    if not 0 <= main_gpu < n_dev:
        raise BadArgumentError(f"-mg/--main-gpu {main_gpu}: this machine has {n_dev} GPU(s) (0..{n_dev - 1})")
    if split_mode == "row":
        raise BadArgumentError("-sm row (tensor parallelism) is not supported: use -sm layer or -sm none")
    if tensor_split is not None:
        ts = [float(x) for x in tensor_split]
        if len(ts) > n_dev or any(x < 0 for x in ts) or sum(ts) <= 0:
            raise BadArgumentError(f"-ts/--tensor-split {','.join(map(str, tensor_split))}: expected up to {n_dev} "
                                   "non-negative shares, not all zero")
        ts += [0.0] * (n_dev - len(ts))
    if split_mode == "none" or n_dev == 1:
        return [CUDABackend(f"cuda:{main_gpu}")], None
    if tensor_split is None:
        free = [float(torch.cuda.mem_get_info(i)[0]) for i in range(n_dev)]
        if need_bytes and need_bytes * 1.05 + 2 * 2**30 < free[main_gpu]:
            return [CUDABackend(f"cuda:{main_gpu}")], None      # fits one GPU: the graph path
        ts = free                                   # llama.cpp's default: by free memory
    return [CUDABackend(f"cuda:{i}") for i in range(n_dev)], ts


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
