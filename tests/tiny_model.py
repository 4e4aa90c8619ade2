"""Write tiny but valid llama GGUF files for tests (random weights, a byte-level vocab)."""

from __future__ import annotations

import numpy as np


def byte_vocab() -> list[str]:
    """GPT-2's byte→unicode map (``ggrun.convert.bytes_to_unicode``): the 256 single-byte tokens."""
    from ggrun.convert import bytes_to_unicode

    table = bytes_to_unicode()
    return [table[b] for b in range(256)]


def write_tiny_llama(path, n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, arch="llama",
                     wtype="Q8_0", seed=0, rope_scaling=None, extra_kv=None, tied=True):
    """A valid llama-architecture GGUF with random weights of type ``wtype``."""
    import gguf
    from gguf.quants import quantize

    rng = np.random.default_rng(seed)
    toks = byte_vocab() + ["he", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    n_vocab = len(toks)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_block_count(n_layer)
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_vocab_size(n_vocab)
    if rope_scaling:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_scaling)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_types([1] * 257 + [3] * 4)
    w.add_token_merges(["h e"])
    w.add_bos_token_id(257)
    w.add_eos_token_id(258)
    w.add_add_bos_token(False)
    for k, v in (extra_kv or {}).items():
        w.add_string(k, v)
    qt = gguf.GGMLQuantizationType[wtype]

    def mat(name, rows, cols, t=qt):
        x = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
        if t == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, x)
        else:
            w.add_tensor(name, quantize(x, t), raw_dtype=t)

    def vec(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    mat("token_embd.weight", n_vocab, n_embd)
    hd = n_embd // n_head
    for i in range(n_layer):
        p = f"blk.{i}."
        vec(p + "attn_norm.weight", n_embd)
        mat(p + "attn_q.weight", n_head * hd, n_embd)
        mat(p + "attn_k.weight", n_head_kv * hd, n_embd)
        mat(p + "attn_v.weight", n_head_kv * hd, n_embd)
        mat(p + "attn_output.weight", n_embd, n_head * hd)
        vec(p + "ffn_norm.weight", n_embd)
        mat(p + "ffn_gate.weight", n_ff, n_embd)
        mat(p + "ffn_up.weight", n_ff, n_embd)
        mat(p + "ffn_down.weight", n_embd, n_ff)
    vec("output_norm.weight", n_embd)
    if not tied:
        mat("output.weight", n_vocab, n_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
