"""ModelConfig: the hyperparameters of a model, read from ``{arch}.*`` GGUF metadata."""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any

from .errors import UnsupportedModelError

# Architectures that share llama's forward pass (RMSNorm, RoPE, GQA attention, SwiGLU)
# and its "normal" RoPE (adjacent pairs: GGUF stores Q/K already permuted for it).
LLAMA_FAMILY = {"llama"}


@dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding settings as llama.cpp uses them."""

    dim: int                      # rotated dims per head (rope.dimension_count)
    freq_base: float = 10000.0
    scaling_type: str = "none"    # none | linear | yarn
    scaling_factor: float = 1.0   # linear: positions are divided by it
    original_ctx: int = 0         # yarn: rope.scaling.original_context_length
    yarn_log_multiplier: float = 0.0
    attn_factor: float = 1.0
    neox: bool = False            # llama: adjacent pairs (False); neox-style archs rotate halves

    @property
    def uses_yarn(self) -> bool:
        return self.scaling_type == "yarn" and self.original_ctx > 0

    def yarn_corr_dims(self, beta_fast: float = 32.0, beta_slow: float = 1.0) -> tuple[float, float]:
        """ggml_rope_yarn_corr_dims: the dims between which YaRN ramps from extrapolation to
        interpolation (llama.cpp's defaults beta_fast 32, beta_slow 1)."""

        def corr_dim(n_rot: float) -> float:
            return self.dim * math.log(self.original_ctx / (n_rot * 2 * math.pi)) / (2 * math.log(self.freq_base))

        return max(0.0, math.floor(corr_dim(beta_fast))), min(self.dim - 1.0, math.ceil(corr_dim(beta_slow)))

    @property
    def freq_scale(self) -> float:
        return 1.0 / self.scaling_factor if self.scaling_type in ("linear", "yarn") and self.scaling_factor else 1.0


@dataclass(frozen=True)
class ModelConfig:
    """What the forward pass needs to know about a model. Build with ``from_gguf``."""

    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    n_ctx_train: int
    rms_eps: float
    rope: RopeConfig
    tied_output: bool
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv

    @property
    def kv_dim(self) -> int:
        return self.n_head_kv * self.head_dim

    def kv_cache_bytes(self, n_ctx: int, n_seq: int = 1, type_k: str = "f16", type_v: str = "f16") -> int:
        """Bytes of the K+V cache for n_ctx positions of n_seq sequences (f16 by default; q8_0 is
        34 bytes per 32 values, f32 4 bytes per value: -ctk/-ctv)."""
        from .kv_types import bytes_per_value

        per = bytes_per_value(type_k) + bytes_per_value(type_v)
        return int(self.n_layer * n_seq * n_ctx * self.kv_dim * per)

    @classmethod
    def from_gguf(cls, gguf_file: Any) -> "ModelConfig":
        """Read the config of a GGUFFile (or anything with ``.metadata`` and ``.tensors``)."""
        md = gguf_file.metadata
        path = getattr(gguf_file, "path", "<gguf>")
        arch = md.get("general.architecture")
        if arch is None:
            raise UnsupportedModelError(f"{path}: no general.architecture in the metadata")
        if arch not in LLAMA_FAMILY:
            raise UnsupportedModelError(
                f"{path}: architecture '{arch}' is not supported (supported: {', '.join(sorted(LLAMA_FAMILY))})"
            )

        def get(key: str, default: Any = None, required: bool = False) -> Any:
            v = md.get(f"{arch}.{key}", default)
            if v is None and required:
                raise UnsupportedModelError(f"{path}: metadata key '{arch}.{key}' is missing")
            return v

        n_embd = int(get("embedding_length", required=True))
        n_head = int(get("attention.head_count", required=True))
        n_head_kv = get("attention.head_count_kv", n_head)
        if isinstance(n_head_kv, list):  # per-layer lists exist in some files
            n_head_kv = n_head_kv[0]
        n_head_kv = int(n_head_kv)
        head_dim = int(get("attention.key_length", n_embd // n_head))
        if n_head <= 0 or n_head_kv <= 0 or n_head % n_head_kv:
            raise UnsupportedModelError(f"{path}: head_count {n_head} is not a multiple of head_count_kv {n_head_kv}")
        tokens = md.get("tokenizer.ggml.tokens")
        n_vocab = int(get("vocab_size", len(tokens) if tokens else 0))
        if "token_embd.weight" in gguf_file.tensors:
            n_vocab = gguf_file.tensors["token_embd.weight"].shape[0]

        scaling_type = str(get("rope.scaling.type", "none") or "none")
        factor = float(get("rope.scaling.factor", 0.0) or 0.0)
        if scaling_type == "none" and get("rope.scale_linear") is not None:  # older key
            scaling_type, factor = "linear", float(get("rope.scale_linear"))
        if scaling_type not in ("none", "linear", "yarn"):
            raise UnsupportedModelError(f"{path}: rope scaling type '{scaling_type}' is not supported")
        rope = RopeConfig(
            dim=int(get("rope.dimension_count", head_dim)),
            freq_base=float(get("rope.freq_base", 10000.0)),
            scaling_type=scaling_type,
            scaling_factor=factor if factor else 1.0,
            original_ctx=int(get("rope.scaling.original_context_length", 0) or 0),
            yarn_log_multiplier=float(get("rope.scaling.yarn_log_multiplier", 0.0) or 0.0),
            attn_factor=float(get("rope.scaling.attn_factor", 1.0) or 1.0),
            neox=False,
        )
        return cls(
            arch=arch,
            n_layer=int(get("block_count", required=True)),
            n_embd=n_embd,
            n_ff=int(get("feed_forward_length", required=True)),
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            n_vocab=n_vocab,
            n_ctx_train=int(get("context_length", 2048)),
            rms_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
            rope=rope,
            tied_output="output.weight" not in gguf_file.tensors,
            name=str(md.get("general.name", "")),
        )
