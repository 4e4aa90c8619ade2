"""``ggrun info FILE``: what a GGUF file holds and what running it costs; ``--quant-types``: the methods.

The memory estimate follows how llama.cpp places a model (llama_model_load / llama_context):
the weights of offloaded layers and their KV cache go to the GPU (-ngl N: the output
layer, counted as layer n_layer, and the last N - 1 repeating layers), the token
embeddings stay on the CPU;
each side needs a compute buffer, which for one 512-token micro-batch is about
4·512·(n_vocab + 2·n_embd + n_ff) bytes plus the 2·512·n_ctx-byte attention mask
(within 10% of what llama.cpp reserves for SmolLM2 and the DeepSeek Coder shapes).
The KV cache is f16 (2 bytes a value) unless -ctk/-ctv say otherwise: q8_0 is 34 bytes per
32 values, f32 4 bytes a value.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from .gguf_file import GGUFFile

N_UBATCH = 512
OVERHEAD = 64 << 20          # process, tokenizer, small buffers


@dataclass
class MemoryEstimate:
    """Bytes a run needs with ``n_ctx`` tokens of context and ``n_gpu_layers`` layers on the GPU."""

    n_ctx: int
    n_gpu_layers: int
    weights_cpu: int
    weights_gpu: int
    kv_cpu: int
    kv_gpu: int
    compute_cpu: int
    compute_gpu: int

    @property
    def ram(self) -> int:
        return self.weights_cpu + self.kv_cpu + self.compute_cpu + OVERHEAD

    @property
    def vram(self) -> int:
        return self.weights_gpu + self.kv_gpu + self.compute_gpu if self.n_gpu_layers else 0


def estimate_memory(f: GGUFFile, n_ctx: int = 4096, n_gpu_layers: int = 0, type_k: str = "f16",
                    type_v: str = "f16") -> MemoryEstimate:
    """RAM and VRAM of a run of GGUF file ``f`` (see the module doc for the model); type_k,
    type_v: the KV cache types (-ctk/-ctv)."""
    from .config import ModelConfig
    from .kv_types import bytes_per_value

    cfg = ModelConfig.from_gguf(f)
    n_ctx = n_ctx or cfg.n_ctx_train
    ngl = cfg.n_layer + 1 if n_gpu_layers < 0 else min(n_gpu_layers, cfg.n_layer + 1)
    n_gpu_l = min(max(ngl - 1, 0), cfg.n_layer)           # repeating layers on the GPU: the last ones
    first_gpu = cfg.n_layer - n_gpu_l
    w_cpu = w_gpu = 0
    for t in f.tensors.values():
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m:
            on_gpu = int(m.group(1)) >= first_gpu
        elif t.name.startswith(("output", "rope_freqs")):
            on_gpu = ngl > 0                              # the output layer goes first
        else:                                             # token_embd: always on the CPU
            on_gpu = False
        if on_gpu:
            w_gpu += t.n_bytes
        else:
            w_cpu += t.n_bytes
    if cfg.tied_output and ngl > 0:                       # the tied output is a GPU copy of token_embd
        w_gpu += f.tensors["token_embd.weight"].n_bytes
    kv_layer = int(n_ctx * cfg.kv_dim * (bytes_per_value(type_k) + bytes_per_value(type_v)))   # K and V
    compute = 4 * N_UBATCH * (cfg.n_vocab + 2 * cfg.n_embd + cfg.n_ff) + 2 * N_UBATCH * n_ctx
    return MemoryEstimate(n_ctx, ngl, w_cpu, w_gpu, kv_layer * (cfg.n_layer - n_gpu_l), kv_layer * n_gpu_l,
                          compute, compute if ngl else 0)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def print_info(path: str | None, n_ctx: int = 4096, n_gpu_layers: int = 0, type_k: str = "f16",
               type_v: str = "f16") -> int:
    if path is None:
        from .default_model import default_model_path

        path = default_model_path()
    f = GGUFFile(path)
    md = f.metadata
    arch = f.architecture
    n_params = sum(t.n_elements for t in f.tensors.values())
    ft = md.get("general.file_type")
    from .quantize import FTYPES

    ft_name = next((x.name for x in FTYPES.values() if x.ftype == ft), str(ft) if ft is not None else "?")
    print(f"file:          {f.path}  (GGUF v{f.version}, {f.file_size / 2**20:.2f} MiB, {f.file_size:,} bytes)")
    print(f"name:          {md.get('general.name', '')}")
    print(f"architecture:  {arch}")
    print(f"file type:     {ft_name}")
    print(f"parameters:    {n_params / 1e6:.2f} M")
    for key in ("context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
                "attention.head_count_kv", "rope.freq_base", "rope.dimension_count", "rope.scaling.type",
                "rope.scaling.factor", "attention.layer_norm_rms_epsilon", "expert_count"):
        v = md.get(f"{arch}.{key}")
        if v is not None:
            print(f"  {key + ':':36s} {v}")
    toks = md.get("tokenizer.ggml.tokens") or []
    print(f"tokenizer:     {md.get('tokenizer.ggml.model')} (pre: {md.get('tokenizer.ggml.pre', 'default')}), "
          f"{len(toks)} tokens")
    for k in ("bos", "eos", "eot", "pad"):
        i = md.get(f"tokenizer.ggml.{k}_token_id")
        if i is not None and 0 <= i < len(toks):
            print(f"  {k + ':':5s} {i:6d} {toks[i]!r}")
    if md.get("tokenizer.ggml.add_bos_token") is not None:
        print(f"  add BOS: {md.get('tokenizer.ggml.add_bos_token')}")
    tpl = md.get("tokenizer.chat_template")
    print(f"chat template: {'yes (' + str(len(tpl)) + ' chars)' if tpl else 'none'}")
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for t in f.tensors.values():
        e = by_type[t.type_name]
        e[0] += 1
        e[1] += t.n_bytes
        e[2] += t.n_elements
    print("tensors:")
    for name, (n, b, el) in sorted(by_type.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:6s} {n:4d} tensors  {b / 2**20:10.2f} MiB  {8 * b / max(el, 1):5.2f} bpw")
    total = sum(t.n_bytes for t in f.tensors.values())
    if n_params:
        print(f"bits per weight: {8 * total / n_params:.2f}")
    if f.tensors and arch:
        try:
            m = estimate_memory(f, n_ctx, n_gpu_layers, type_k, type_v)
        except Exception as e:  # info is still useful for files ggrun can't run
            print(f"(no memory estimate: {e})")
            return 0
        kv = f" -ctk {type_k} -ctv {type_v}" if (type_k, type_v) != ("f16", "f16") else ""
        print(f"memory for -c {m.n_ctx} -ngl {n_gpu_layers}{kv}:")
        print(f"  RAM:  weights {m.weights_cpu / 2**20:9.1f} MiB + KV cache {m.kv_cpu / 2**20:8.1f} MiB + "
              f"compute {m.compute_cpu / 2**20:6.1f} MiB + overhead {OVERHEAD / 2**20:.0f} MiB")
        if m.n_gpu_layers:
            print(f"  VRAM: weights {m.weights_gpu / 2**20:9.1f} MiB + KV cache {m.kv_gpu / 2**20:8.1f} MiB + "
                  f"compute {m.compute_gpu / 2**20:6.1f} MiB")
        print(f"Max RAM required: {_gb(m.ram)}" + (f"   VRAM required: {_gb(m.vram)}" if m.n_gpu_layers else ""))
    return 0


# --------------------------------------------------------------------------------------
# --quant-types
# --------------------------------------------------------------------------------------

# ggml tensor types: (name, bytes per block, weights per block, structure)
TENSOR_TYPES = [
    ("F32", 4, 1, "32-bit float"),
    ("F16", 2, 1, "IEEE half precision"),
    ("BF16", 2, 1, "bfloat16 (float32 with the low 16 mantissa bits dropped)"),
    ("Q8_0", 34, 32, "blocks of 32: f16 scale d, 32 int8; w = d*q"),
    ("Q4_0", 18, 32, "blocks of 32: f16 scale d, 4-bit q; w = d*(q-8)"),
    ("Q4_1", 20, 32, "blocks of 32: f16 scale d and min m, 4-bit q; w = d*q + m"),
    ("Q5_0", 22, 32, "blocks of 32: f16 d, 5-bit q (5th bits in a 32-bit mask); w = d*(q-16)"),
    ("Q5_1", 24, 32, "blocks of 32: f16 d and m, 5-bit q; w = d*q + m"),
    ("Q2_K", 84, 256, "super-blocks of 256 = 16 blocks of 16: 4-bit scale and 4-bit min per block, "
                      "f16 super-scales d and dmin, 2-bit q; w = d*s*q - dmin*m"),
    ("Q3_K", 110, 256, "super-blocks of 256 = 16 blocks of 16: 6-bit signed scale per block, f16 d, "
                       "3-bit q (high bit in a mask); w = d*s*(q-4)"),
    ("Q4_K", 144, 256, "super-blocks of 256 = 8 blocks of 32: 6-bit scale and 6-bit min per block, "
                       "f16 d and dmin, 4-bit q; w = d*s*q - dmin*m"),
    ("Q5_K", 176, 256, "as Q4_K with 5-bit q"),
    ("Q6_K", 210, 256, "super-blocks of 256 = 16 blocks of 16: int8 scale per block, f16 d, 6-bit q; "
                       "w = d*s*(q-32)"),
]

# the mixes: what llama-quantize puts where (llama architecture, no importance matrix), and use
MIX_NOTES = {
    "Q2_K": ("Q2_K; attn_v Q3_K (Q4_K with GQA ≥ 4), ffn_down and attn_output Q3_K, output Q6_K",
             "smallest; large quality loss, rarely worth it"),
    "Q3_K_S": ("Q3_K everywhere, output Q6_K", "very small; high quality loss"),
    "Q3_K_M": ("Q3_K; attn_v Q5_K in the first 2 layers then Q4_K, attn_output Q4_K, ffn_down Q5_K in the "
               "first 1/16 of layers then Q4_K, output Q6_K", "very small; high quality loss"),
    "Q3_K_L": ("Q3_K; attn_v, attn_output and ffn_down Q5_K, output Q6_K", "small; substantial quality loss"),
    "Q4_0": ("Q4_0, output Q6_K", "legacy; small, high quality loss: prefer Q3_K_M or Q4_K_S"),
    "Q4_1": ("Q4_1, output Q6_K", "legacy; prefer Q4_K_M"),
    "Q4_K_S": ("Q4_K; attn_v Q5_K in the first 4 layers, ffn_down Q5_K in the first 1/8, output Q6_K",
               "small; more quality loss than Q4_K_M"),
    "Q4_K_M": ("Q4_K; attn_v and ffn_down Q6_K on the 'more bits' layers (first and last 1/8, every third "
               "between), output Q6_K", "medium; balanced quality: the usual choice"),
    "Q5_0": ("Q5_0, output Q6_K", "legacy; medium: prefer Q4_K_M"),
    "Q5_1": ("Q5_1, output Q6_K", "legacy; prefer Q5_K_M"),
    "Q5_K_S": ("Q5_K everywhere, output Q6_K", "large; low quality loss"),
    "Q5_K_M": ("Q5_K; attn_v and ffn_down Q6_K on the 'more bits' layers, output Q6_K",
               "large; very low quality loss"),
    "Q6_K": ("Q6_K everywhere", "very large; extremely low quality loss"),
    "Q8_0": ("Q8_0 everywhere", "very large; extremely low quality loss, rarely needed"),
    "F16": ("F16 for every matrix, norms F32", "unquantized reference (half the size of F32)"),
    "BF16": ("BF16 for every matrix, norms F32", "unquantized reference"),
    "F32": ("F32 everywhere", "full precision"),
}


def print_quant_types() -> int:
    from .quantize import FTYPES, SEED_TYPES

    print("Tensor types (ggml):")
    print(f"  {'type':5s} {'bpw':>7s}  structure")
    for name, size, block, desc in TENSOR_TYPES:
        print(f"  {name:5s} {8 * size / block:7.4f}  {desc}")
    print()
    print("Mixes (ggrun quantize IN OUT TYPE, as llama-quantize): norms stay F32; a row whose length is not a")
    print("multiple of 256 falls back from Q2_K/Q3_K to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0;")
    print("with tied embeddings token_embd follows the output's rule.")
    order = SEED_TYPES + [t for t in FTYPES if t not in SEED_TYPES]
    for name in order:
        if name not in MIX_NOTES:
            continue
        mix, use = MIX_NOTES[name]
        ref = FTYPES[name].desc.strip()
        print(f"  {name:7s} {use}")
        print(f"          {mix}")
        print(f"          llama.cpp's figure: {ref}")
    return 0


def main(args) -> int:
    """``ggrun info`` with the flags of the CLI (model, -c, -ngl, --quant-types)."""
    if getattr(args, "quant_types", False):
        return print_quant_types()
    return print_info(getattr(args, "model", None), n_ctx=getattr(args, "ctx_size", 4096),
                      n_gpu_layers=getattr(args, "n_gpu_layers", 0), type_k=getattr(args, "cache_type_k", "f16"),
                      type_v=getattr(args, "cache_type_v", "f16"))
