"""What the two Python APIs share: errors, the model_type table, loading, seeds, embeddings."""

from __future__ import annotations

import random
from typing import Any, Sequence

from ..errors import BadArgumentError, UnsupportedModelError
from ..hub import ConflictingArgumentsError  # noqa: F401  (re-exported)


class ModelTypeError(BadArgumentError):
    """``model_type`` unknown, or not the architecture the GGUF file says it holds."""


class UnsupportedArgumentError(BadArgumentError):
    """An argument of ctransformers or llama-cpp-python that ggrun doesn't implement (yet)."""


# ctransformers' model_type (and common names people pass) → the GGUF architectures that
# such a model is stored as. The file's ``general.architecture`` decides; this only checks.
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "llama": ("llama",), "llama2": ("llama",), "llama3": ("llama",), "codellama": ("llama",),
    "mistral": ("llama", "mistral3"), "mixtral": ("llama",), "yi": ("llama",), "tinyllama": ("llama",),
    "smollm": ("llama",), "smollm2": ("llama",),
    "deepseek": ("llama", "deepseek", "deepseek2"), "deepseek_coder": ("llama",), "deepseek-coder": ("llama",),
    "gpt2": ("gpt2",), "gptj": ("gptj",), "gpt4all-j": ("gptj",),
    "gpt_neox": ("gptneox",), "gpt-neox": ("gptneox",), "gptneox": ("gptneox",), "dolly-v2": ("gptneox",),
    "pythia": ("gptneox",), "stablelm": ("stablelm", "gptneox"),
    "falcon": ("falcon",), "mpt": ("mpt",), "replit": ("mpt",),
    "starcoder": ("starcoder", "starcoder2"), "gpt_bigcode": ("starcoder",), "starcoder2": ("starcoder2",),
    "qwen": ("qwen", "qwen2"), "qwen2": ("qwen2",), "phi": ("phi2", "phi3"), "phi2": ("phi2",), "phi3": ("phi3",),
    "gemma": ("gemma", "gemma2", "gemma3"), "bloom": ("bloom",),
}


def file_metadata(path: str) -> dict[str, Any]:
    """The metadata of a GGUF file (the first part's, for a split model)."""
    from ..gguf_file import GGUFFile

    return GGUFFile(path).metadata


def check_model_type(model_type: str | None, path: str, metadata: dict[str, Any] | None = None) -> str:
    """Check ctransformers' ``model_type`` against the file; return the file's architecture.
    The file decides what runs: a model_type that disagrees with it is an error, never a hint."""
    md = file_metadata(path) if metadata is None else metadata
    arch = str(md.get("general.architecture", ""))
    if model_type is None:
        return arch
    key = model_type.strip().lower()
    allowed = MODEL_TYPES.get(key)
    if allowed is None and key != arch:
        raise ModelTypeError(f"model_type='{model_type}' is not a known model type (known: "
                             f"{', '.join(sorted(MODEL_TYPES))}); leave it out: the GGUF file says what it holds")
    if allowed is not None and arch not in allowed:
        fits = sorted((k for k, v in MODEL_TYPES.items() if arch in v), key=lambda k: (k != arch, k)) or [arch]
        raise ModelTypeError(f"model_type='{model_type}' does not match {path}: the file holds a '{arch}' model "
                             f"(use model_type={', '.join(repr(f) for f in fits[:4])}, or leave it out)")
    return arch


def reject_unsupported(**given: tuple[Any, Any]) -> None:
    """``name=(value, default)``: raise UnsupportedArgumentError for the first one that is not
    its default (or None)."""
    for name, (value, default) in given.items():
        if value is not None and value != default:
            raise UnsupportedArgumentError(f"{name}={value!r} is not supported by ggrun (leave it at {default!r})")


def load_engine(path: str, *, n_ctx: int, n_gpu_layers: int = 0, n_threads: int | None = None,
                n_batch: int = 512, type_k=None, type_v=None):
    """``ggrun.loader.load`` with the API's arguments checked. type_k, type_v: the KV cache types
    as llama-cpp-python takes them (a ggml type id such as llama_cpp.GGML_TYPE_Q8_0 = 8, or a
    name such as "q8_0"; None: f16)."""
    from ..kv_types import api_cache_type
    from ..loader import load

    if n_ctx < 0:
        raise BadArgumentError(f"n_ctx/context_length = {n_ctx}: must be ≥ 0 (0: the model's own)")
    if n_threads is not None and n_threads <= 0:
        n_threads = None
    if n_gpu_layers < 0:
        n_gpu_layers = 10**6            # -1: all layers, as llama.cpp
    return load(path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, n_threads=n_threads, n_batch=n_batch,
                cache_type_k=api_cache_type(type_k, "type_k"), cache_type_v=api_cache_type(type_v, "type_v"))


def sync_slot(eng, tokens: Sequence[int], slot: int = 0):
    """Make KV slot ``slot`` hold exactly ``tokens``, evaluating only what it doesn't hold yet
    (at least the last token); return the logits of the last token."""
    if not tokens:
        raise BadArgumentError("no tokens to evaluate")
    held = eng.cache.tokens[slot]
    n = 0
    for a, b in zip(held, tokens):
        if a != b:
            break
        n += 1
    n = min(n, len(tokens) - 1)
    del held[n:]
    return eng.eval(list(tokens[n:]), slot)


class SeedStream:
    """Per-call seeds: a fixed seed gives the same sequence of calls the same tokens; a
    negative (or llama.cpp's 0xFFFFFFFF) seed draws fresh ones."""

    RANDOM = (-1, 0xFFFFFFFF)

    def __init__(self, seed: int | None):
        self.seed = seed
        self._rng = random.Random(seed) if seed is not None and seed not in self.RANDOM else random.SystemRandom()

    def next(self, override: int | None = None) -> int:
        if override is not None and override not in self.RANDOM:
            return int(override)
        return self._rng.randrange(2**31)


def hidden_states(eng, tokens: Sequence[int], slot: int = 0):
    """The final-norm hidden states of ``tokens``, [N, n_embd] float32 (for embeddings).

    Runs the model's forward with the output projection left out. (Engine has no
    embedding call yet; this borrows the backend for one forward pass.)"""
    import torch

    model = eng.model
    real, out_w = model.be, model.w.output

    class _SkipOutput:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def matmul(self, w, x):
            return x if w is out_w else real.matmul(w, x)

    eng.reset(slot)
    model.be = _SkipOutput()
    try:
        h = eng.eval(list(tokens), slot, all_logits=True)
    finally:
        model.be = real
        eng.reset(slot)
    if h.dim() != 2 or h.shape[-1] != eng.cfg.n_embd:
        raise UnsupportedModelError("embeddings are not available for this model/backend yet")
    return h.float().to(torch.device("cpu"))
