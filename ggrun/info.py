"""``ggrun info FILE``: what a GGUF file holds and what running it costs."""

from __future__ import annotations

from collections import defaultdict

from .gguf_file import GGUFFile


def print_info(path: str | None, n_ctx: int = 4096) -> int:
    if path is None:
        from .default_model import default_model_path

        path = default_model_path()
    f = GGUFFile(path)
    md = f.metadata
    arch = f.architecture
    n_params = sum(t.n_elements for t in f.tensors.values())
    print(f"file:          {f.path}  (GGUF v{f.version}, {f.file_size / 2**20:.2f} MiB)")
    print(f"name:          {md.get('general.name', '')}")
    print(f"architecture:  {arch}")
    print(f"parameters:    {n_params / 1e6:.2f} M")
    for key in ("context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
                "attention.head_count_kv", "rope.freq_base", "rope.dimension_count", "rope.scaling.type",
                "rope.scaling.factor", "attention.layer_norm_rms_epsilon"):
        v = md.get(f"{arch}.{key}")
        if v is not None:
            print(f"  {key + ':':36s} {v}")
    print(f"tokenizer:     {md.get('tokenizer.ggml.model')} (pre: {md.get('tokenizer.ggml.pre', 'default')}), "
          f"{len(md.get('tokenizer.ggml.tokens') or [])} tokens")
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
    total = f.tensor_bytes
    if n_params:
        print(f"bits per weight: {8 * total / n_params:.2f}")
    if f.tensors and arch:
        try:
            from .config import ModelConfig

            cfg = ModelConfig.from_gguf(f)
            kv = cfg.kv_cache_bytes(n_ctx)
            print(f"memory for -c {n_ctx}: weights {total / 2**20:.1f} MiB + KV cache (f16) {kv / 2**20:.1f} MiB "
                  f"≈ {(total + kv) / 2**20 + 100:.0f} MiB with scratch")
        except Exception as e:  # info still useful for files ggrun can't run
            print(f"(can't run: {e})")
    return 0
