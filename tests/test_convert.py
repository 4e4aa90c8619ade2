"""ggrun convert: a small llama checkpoint in Hugging Face layout → GGUF, loaded by ggrun and llama.cpp alike.

The checkpoint is written here: random weights (seeded), config.json shaped like DeepSeek
Coder (GQA, rope_scaling linear 4), and a real byte-level BPE tokenizer.json rebuilt from
llama.cpp's DeepSeek Coder vocab file (tests/data/vocab), so the pre-tokenizer detection
(sha256 of the check text's ids) must find 'deepseek-coder' exactly as convert_hf_to_gguf.py.

llama.cpp's side (tests/data/convert/golden.json, made by scripts/make_convert_golden.py
from these same files): the converted file's sha256, llama-tokenize's ids for a text, and
llama-perplexity's per-chunk PPL and per-token NLL on it; here ggrun must agree.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN_PATH = Path(__file__).parent / "data" / "convert" / "golden.json"
SAMPLE_TEXT = (
    "def greet(name):\n    return f\"Hello, {name}!\"\n\n"
    "The quick brown fox jumps over the lazy dog. 3.14159 and 2718 are numbers; "
    "ünïcödé and 中文 and emoji 🦙 too.\n" * 6
)

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 16384,
    "rms_norm_eps": 1e-6,
    "rope_theta": 100000.0,
    "rope_scaling": {"type": "linear", "factor": 4.0},
    "vocab_size": 32256,
    "bos_token_id": 32013,
    "eos_token_id": 32014,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n"
                 "{% else %}### Response:\n{{ m['content'] }}\n<|EOT|>\n{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}### Response:\n{% endif %}")


def deepseek_tokenizer_json(vocab_gguf: Path) -> dict:
    """A tokenizer.json with DeepSeek Coder's pre-tokenizer, vocab and merges from llama.cpp's vocab file."""
    from ggrun.gguf_file import GGUFFile

    f = GGUFFile(vocab_gguf)
    toks, ty = f.metadata["tokenizer.ggml.tokens"], f.metadata["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(toks) if ty[i] == 1}
    added = [{"id": i, "content": toks[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": ty[i] != 3, "special": ty[i] == 3}
             for i in range(len(toks)) if ty[i] != 1 and not toks[i].startswith("[PAD")]
    bos_id = f.metadata["tokenizer.ggml.bos_token_id"]
    bos = toks[bos_id]

    def split(rx):
        return {"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated", "invert": False}

    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            split("[\r\n]"), split("\\s?\\p{L}+"), split("\\s?\\p{P}+"), split("[一-龥ࠀ-一가-퟿]+"),
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": f.metadata["tokenizer.ggml.merges"]},
    }


def hf_weights(cfg: dict = CONFIG, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights of a llama model in HF names (peaky enough that the logits are not flat)."""
    rng = np.random.default_rng(seed)
    e, ff, nl = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = e // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    v = cfg["vocab_size"]

    def m(r, c, s):
        return (s * rng.standard_normal((r, c))).astype(np.float32)

    w = {"model.embed_tokens.weight": m(v, e, 1.0)}
    for i in range(nl):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(e)).astype(np.float32)
        w[p + "self_attn.q_proj.weight"] = m(e, e, 0.3)
        w[p + "self_attn.k_proj.weight"] = m(kv, e, 0.3)
        w[p + "self_attn.v_proj.weight"] = m(kv, e, 0.2)
        w[p + "self_attn.o_proj.weight"] = m(e, e, 0.2)
        w[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(e)).astype(np.float32)
        w[p + "mlp.gate_proj.weight"] = m(ff, e, 0.2)
        w[p + "mlp.up_proj.weight"] = m(ff, e, 0.2)
        w[p + "mlp.down_proj.weight"] = m(e, ff, 0.2)
    w["model.norm.weight"] = (1 + 0.1 * rng.standard_normal(e)).astype(np.float32)
    w["lm_head.weight"] = m(v, e, 0.25)
    return w


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], bf16: bool = True) -> None:
    """A .safetensors file (header JSON + raw little-endian data), as the safetensors package writes it."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        data = to_bf16_bits(a) if bf16 else a.astype("<f4")
        b = data.tobytes()
        header[name] = {"dtype": "BF16" if bf16 else "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def write_hf_checkpoint(d: Path, vocab_gguf: Path, fmt: str = "safetensors", seed: int = 0) -> Path:
    """The test checkpoint: config, tokenizer files and weights (safetensors bf16, or pytorch_model.bin)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(CONFIG, indent=2))
    (d / "tokenizer.json").write_text(json.dumps(deepseek_tokenizer_json(vocab_gguf), ensure_ascii=False))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<|EOT|>",
        "model_max_length": 16384, "tokenizer_class": "LlamaTokenizerFast", "chat_template": CHAT_TEMPLATE,
    }, ensure_ascii=False, indent=2))
    w = hf_weights(seed=seed)
    if fmt == "safetensors":
        write_safetensors(d / "model.safetensors", w)
    else:
        import torch

        torch.save({k: torch.from_numpy(v).to(torch.bfloat16) for k, v in w.items()}, d / "pytorch_model.bin")
    return d


# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden() -> dict:
    if not GOLDEN_PATH.exists():
        pytest.skip("tests/data/convert/golden.json missing: run scripts/make_convert_golden.py")
    return json.loads(GOLDEN_PATH.read_text())


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, vocab_dir) -> Path:
    return write_hf_checkpoint(tmp_path_factory.mktemp("hf") / "tiny-deepseek", vocab_dir / "ggml-vocab-deepseek-coder.gguf")


@pytest.fixture(scope="module")
def converted(tmp_path_factory, hf_dir) -> dict[str, Path]:
    from ggrun.convert import convert

    d = tmp_path_factory.mktemp("gguf")
    out = {}
    for t in ("f32", "f16", "bf16", "q8_0"):
        out[t] = d / f"tiny-{t}.gguf"
        convert(str(hf_dir), str(out[t]), outtype=t)
    return out


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_pre_tokenizer_detected_as_llama_cpp(hf_dir):
    from ggrun.convert import detect_pre

    pre, h = detect_pre(hf_dir / "tokenizer.json")
    assert pre == "deepseek-coder"
    assert h == "347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821"


def test_metadata(converted, vocab_dir):
    from ggrun.gguf_file import GGUFFile

    f = GGUFFile(converted["f16"])
    md = f.metadata
    assert md["general.architecture"] == "llama" and md["general.file_type"] == 1
    assert md["llama.rope.scaling.type"] == "linear" and md["llama.rope.scaling.factor"] == 4.0
    assert md["llama.rope.freq_base"] == 100000.0 and md["llama.context_length"] == 16384
    assert md["llama.attention.head_count_kv"] == 2 and md["llama.rope.dimension_count"] == 16
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "deepseek-coder"
    assert md["tokenizer.ggml.bos_token_id"] == 32013 and md["tokenizer.ggml.eos_token_id"] == 32021
    assert md["tokenizer.ggml.add_bos_token"] is True and md["tokenizer.chat_template"] == CHAT_TEMPLATE
    ref = GGUFFile(vocab_dir / "ggml-vocab-deepseek-coder.gguf").metadata
    assert md["tokenizer.ggml.tokens"][:32022] == ref["tokenizer.ggml.tokens"][:32022]
    assert md["tokenizer.ggml.tokens"][32100] == "[PAD32100]"
    assert md["tokenizer.ggml.merges"] == ref["tokenizer.ggml.merges"]
    types = md["tokenizer.ggml.token_type"]
    assert types[100] == 1 and types[32013] == 3 and types[32021] == 3 and types[32000] == 4 and types[32100] == 5
    assert {t.type_name for n, t in f.tensors.items() if n.endswith("norm.weight")} == {"F32"}
    assert f.tensors["blk.0.attn_q.weight"].type_name == "F16"
    assert f.tensors["blk.0.attn_k.weight"].shape == (32, 64)


def test_qk_permutation(hf_dir, converted):
    """GGUF's attn_q/attn_k rows are HF's, permuted to adjacent rotary pairs (per head: 0, d/2, 1, d/2+1, …)."""
    from ggrun.gguf_file import GGUFFile
    from ggrun.quants import dequantize

    w = hf_weights()
    f = GGUFFile(converted["f32"])
    for name, hf, heads in (("attn_q", "q_proj", 4), ("attn_k", "k_proj", 2)):
        g = dequantize(f.tensors[f"blk.1.{name}.weight"].data, 0).numpy()
        src = to_bf16_bits(w[f"model.layers.1.self_attn.{hf}.weight"]).astype(np.uint32) << 16
        src = src.view(np.float32)
        hd = src.shape[0] // heads
        perm = np.concatenate([hh * hd + np.stack([np.arange(hd // 2), hd // 2 + np.arange(hd // 2)], 1).reshape(-1)
                               for hh in range(heads)])
        np.testing.assert_array_equal(g, src[perm])
    v = dequantize(f.tensors["blk.1.attn_v.weight"].data, 0).numpy()
    np.testing.assert_array_equal(v, (to_bf16_bits(w["model.layers.1.self_attn.v_proj.weight"]).astype(np.uint32) << 16).view(np.float32))


def test_pytorch_bin_gives_the_same_file(tmp_path, hf_dir, converted, vocab_dir):
    from ggrun.convert import convert

    d = write_hf_checkpoint(tmp_path / "bin", vocab_dir / "ggml-vocab-deepseek-coder.gguf", fmt="bin")
    out = tmp_path / "bin-f16.gguf"
    convert(str(d), str(out), outtype="f16")
    # the same tensors and metadata; only general.name (the folder) differs
    from ggrun.gguf_file import GGUFFile

    a, b = GGUFFile(out), GGUFFile(converted["f16"])
    assert {k: v for k, v in a.metadata.items() if k != "general.name"} == \
           {k: v for k, v in b.metadata.items() if k != "general.name"}
    for n, t in a.tensors.items():
        assert np.array_equal(np.asarray(t.data), np.asarray(b.tensors[n].data)), n


def test_converted_files_are_llama_cpps(converted, golden):
    """The same bytes as the files llama.cpp was run on (so its figures apply here)."""
    for t, p in converted.items():
        assert _sha(p) == golden["files"][t]["sha256"], t


def test_tokenizer_agrees_with_llama_cpp(converted, golden):
    from ggrun.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(str(converted["f16"]))
    assert tok.encode(SAMPLE_TEXT, add_bos=None, parse_special=False) == golden["tokens"]


@pytest.mark.parametrize("outtype", ["f32", "f16", "bf16", "q8_0"])
def test_ggrun_runs_it_like_llama_cpp(converted, golden, outtype):
    """ggrun's perplexity over llama.cpp's chunks: the same per-chunk PPL and per-token NLL."""
    from ggrun.loader import load
    from ggrun.perplexity import perplexity

    g = golden["files"][outtype]
    eng = load(str(converted[outtype]), n_ctx=golden["n_ctx"], n_threads=2)
    r = perplexity(eng, golden["tokens"], golden["n_ctx"], out=None)
    assert r.n_chunks == len(g["chunk_ppl"])
    # q8_0: llama.cpp also rounds the activations to 8-bit blocks; on this random model (PPL ~2e5,
    # NLL ~12 a token) that moves its PPL by ~2%
    tol = {"f32": 2e-3, "f16": 2e-3, "bf16": 5e-3, "q8_0": 3e-2}[outtype]
    for a, b in zip(r.chunk_ppl, g["chunk_ppl"]):
        assert abs(a / b - 1) < tol, (r.chunk_ppl, g["chunk_ppl"])
    d = np.abs(r.nll - np.array(g["nll"]))
    # llama.cpp's saved values are 16-bit; with bf16/q8_0 weights it also rounds the activations
    # (to bf16 / 8-bit blocks) before the dot products, which ggrun needn't do
    exact = outtype in ("f32", "f16")
    assert d.mean() < (0.005 if exact else 0.03) and d.max() < (0.02 if exact else 0.1), (d.mean(), d.max())
    assert math.isclose(r.ppl, g["ppl"], rel_tol=tol)


def test_bad_checkpoints(tmp_path, hf_dir):
    def run(*a):
        return subprocess.run([sys.executable, "-m", "ggrun", "convert", *map(str, a)], capture_output=True, text=True)

    r = run(tmp_path / "nope", tmp_path / "o.gguf")
    assert r.returncode == 2 and "no such folder" in r.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (bad / f).write_bytes((hf_dir / f).read_bytes())
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    r = run(bad, tmp_path / "o.gguf")
    assert r.returncode == 2 and "not a readable safetensors file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.gguf").exists()
    (bad / "model.safetensors").unlink()
    (bad / "pytorch_model.bin").write_bytes(b"garbage")
    r = run(bad, tmp_path / "o.gguf")
    assert r.returncode == 2 and "not a readable PyTorch checkpoint" in r.stderr
    assert not list(tmp_path.glob("o.gguf*"))
    r = run(hf_dir, tmp_path / "o.gguf", "--outtype", "q4_k")
    assert r.returncode == 2


def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_piece(piece: str, score: float, typ: int | None) -> bytes:
    body = b"\x0a" + _pb_varint(len(piece.encode())) + piece.encode() + b"\x15" + struct.pack("<f", score)
    if typ is not None:
        body += b"\x18" + _pb_varint(typ)
    return b"\x0a" + _pb_varint(len(body)) + body


def test_sentencepiece_vocab(tmp_path):
    """tokenizer.model (a SentencePiece ModelProto, parsed without the sentencepiece package) → llama vocab."""
    from ggrun.convert import vocab_spm

    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("<0x0A>", 0.0, 6), ("▁the", -1.5, None),
              ("ing", -2.25, 1), ("▁<tool>", 0.0, 4)]
    model = b"".join(_pb_piece(*p) for p in pieces) + b"\x12\x04\x08\x01\x10\x02"    # + a trainer_spec field
    (tmp_path / "tokenizer.model").write_bytes(model)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"added_tokens_decoder": {"7": {"content": "<|im_end|>", "special": True}}}))
    tokens, scores, types = vocab_spm(tmp_path, 10)
    assert tokens[:7] == [p[0] for p in pieces] and tokens[7] == "<|im_end|>" and tokens[9] == "[PAD9]"
    assert scores[4] == -1.5 and scores[5] == -2.25 and scores[7] == -1000.0 and scores[9] == -10000.0
    assert types == [2, 3, 3, 6, 1, 1, 4, 3, 5, 5]
