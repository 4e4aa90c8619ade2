"""Fill in the middle: the token layout of llama.cpp's /infill, the FIM styles, the CLI and API."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ggrun.infill import STYLES, InfillError, fim_tokens, infill, infill_ids

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((ROOT / "tests" / "data" / "chat" / "infill_golden.json").read_text())


def write_tiny_deepseek(path, vocab_path, n_embd=256, n_head=2, n_ff=256, n_layer=1, seed=0, chat_template=None,
                        rope_scaling=4.0):
    """A random-weight llama GGUF of DeepSeek Coder's kind: its real vocab (32256 tokens,
    BOS 32013, EOS 32014, FIM and <|EOT|> tokens), head_dim 128, linear RoPE scaling 4.0 (by default)."""
    import gguf
    from gguf.quants import quantize

    from ggrun.gguf_file import GGUFFile

    md = GGUFFile(vocab_path).metadata
    rng = np.random.default_rng(seed)
    toks = md["tokenizer.ggml.tokens"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-deepseek-coder")
    w.add_block_count(n_layer)
    w.add_context_length(16384)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(100000.0)
    w.add_rope_dimension_count(n_embd // n_head)
    if rope_scaling:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_scaling)
    w.add_vocab_size(len(toks))
    w.add_tokenizer_model(md["tokenizer.ggml.model"])
    w.add_tokenizer_pre(md["tokenizer.ggml.pre"])
    w.add_token_list(toks)
    w.add_token_types(list(md["tokenizer.ggml.token_type"]))
    w.add_token_merges(md["tokenizer.ggml.merges"])
    w.add_bos_token_id(md["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(md["tokenizer.ggml.eos_token_id"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)
    q8 = gguf.GGMLQuantizationType.Q8_0

    def mat(name, rows, cols):
        x = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
        w.add_tensor(name, quantize(x, q8), raw_dtype=q8)

    def vec(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    mat("token_embd.weight", len(toks), n_embd)
    for i in range(n_layer):
        p = f"blk.{i}."
        vec(p + "attn_norm.weight", n_embd)
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            mat(p + t + ".weight", n_embd, n_embd)
        vec(p + "ffn_norm.weight", n_embd)
        mat(p + "ffn_gate.weight", n_ff, n_embd)
        mat(p + "ffn_up.weight", n_ff, n_embd)
        mat(p + "ffn_down.weight", n_embd, n_ff)
    vec("output_norm.weight", n_embd)
    mat("output.weight", len(toks), n_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


@pytest.fixture(scope="session")
def tiny_deepseek(tmp_path_factory, vocab_dir):
    return write_tiny_deepseek(tmp_path_factory.mktemp("tinyds") / "tiny-deepseek.gguf",
                               vocab_dir / "ggml-vocab-deepseek-coder.gguf")


_TOKS: dict = {}


def _tok(rel):
    from ggrun.tokenizer import Tokenizer

    if rel not in _TOKS:
        _TOKS[rel] = Tokenizer.from_gguf(str(ROOT / rel))
    return _TOKS[rel]


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{Path(c['vocab']).stem}-{c['prefix'][:10]!r}")
def test_infill_ids_equal_llama_cpp_layout(case, vocab_dir):
    assert infill_ids(_tok(case["vocab"]), case["prefix"], case["suffix"]) == case["ids"]


def test_deepseek_fim_tokens_from_the_vocab(vocab_dir):
    tok = _tok("tests/data/vocab/ggml-vocab-deepseek-coder.gguf")
    fim = fim_tokens(tok)
    texts = [tok.token_text(i) for i in (fim.pre, fim.suf, fim.mid)]
    assert texts == ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"]
    named = fim_tokens(tok, "deepseek")
    assert (named.pre, named.suf, named.mid) == (fim.pre, fim.suf, fim.mid)
    with pytest.raises(InfillError, match="<fim_prefix>"):
        fim_tokens(tok, "starcoder")


def test_prefix_special_text_stays_text_and_spm_order(vocab_dir):
    tok = _tok("tests/data/vocab/ggml-vocab-deepseek-coder.gguf")
    ids = infill_ids(tok, "a<｜end▁of▁sentence｜>", "b")
    assert tok.eos_id not in ids                     # a control token's text stays text
    assert 32021 in infill_ids(tok, "a<|EOT|>", "b")  # <|EOT|> is user-defined: always matched, as llama.cpp
    spm = infill_ids(tok, "x = 1\n", "\nprint(x)\n", spm=True)
    fim = fim_tokens(tok)
    assert spm[0] == tok.bos_id and spm[1] == fim.suf and spm[-1] == fim.mid
    assert spm.index(fim.pre) > spm.index(fim.suf)


def test_truncation_keeps_end_of_prefix_and_start_of_suffix(vocab_dir):
    tok = _tok("tests/data/vocab/ggml-vocab-deepseek-coder.gguf")
    fim = fim_tokens(tok)
    prefix = "".join(f"line{i} = {i}\n" for i in range(400))
    ids = infill_ids(tok, prefix, prefix, n_batch=64)
    p = ids[ids.index(fim.pre) + 1:ids.index(fim.suf)]
    s = ids[ids.index(fim.suf) + 1:ids.index(fim.mid)]
    full = tok.encode(prefix, add_bos=False, parse_special=False)
    assert p == full[-48:] and s == full[:14]        # 3/4·n_batch and n_batch/4 − 2


class _StubTok:
    """A vocab with given special texts; text pieces become one id per character."""

    def __init__(self, specials, add_bos=True, spm=False):
        self.texts = list(specials) + [chr(c) for c in range(32, 127)] + ["\n"]
        self.bos_id, self.eos_id, self.add_bos = 0, 1, add_bos
        self.fim_pre_id = self.fim_suf_id = self.fim_mid_id = None
        self.fim_rep_id = self.fim_sep_id = None

    @property
    def n_vocab(self):
        return len(self.texts)

    def token_text(self, i):
        return self.texts[i]

    def encode(self, text, add_bos=None, parse_special=True):
        assert add_bos is False and parse_special is False
        return [self.texts.index(c) for c in text]


def test_codellama_style_by_text():
    tok = _StubTok(["<s>", "</s>", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"])
    ids = infill_ids(tok, "ab", "c", style="codellama")
    t = tok.texts
    assert [t[i] for i in ids] == ["<s>", "▁<PRE>", "a", "b", "▁<SUF>", "c", "▁<MID>"]


def test_qwen_style_repo_level_layout():
    tok = _StubTok(["<|endoftext|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                    "<|repo_name|>", "<|file_sep|>"], add_bos=False)
    ids = infill_ids(tok, "a", "b", style="qwen", extra=[{"filename": "u.py", "text": "z"}])
    got = "".join(tok.texts[i] for i in ids)
    assert got == ("<|repo_name|>myproject\n<|file_sep|>u.py\nz<|file_sep|>filename\n"
                   "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>")
    assert set(STYLES) == {"deepseek", "codellama", "starcoder", "qwen"}


def test_model_without_fim_tokens_fails_clearly(smollm2_path):
    r = subprocess.run([sys.executable, "-m", "ggrun", "infill", "-m", smollm2_path, "--in-prefix", "def f(",
                        "--in-suffix", ")", "-n", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "fill-in-the-middle" in lines[0] and "Traceback" not in r.stderr


def test_infill_cli_feeds_the_llama_cpp_sequence(tiny_deepseek, vocab_dir):
    case = next(c for c in GOLDEN["cases"] if "deepseek" in c["vocab"] and c["prefix"].startswith("def fib"))
    r = subprocess.run([sys.executable, "-m", "ggrun", "infill", "-m", tiny_deepseek, "--in-prefix", case["prefix"],
                        "--in-suffix", case["suffix"], "-n", "3", "--temp", "0", "--verbose-prompt", "-c", "256"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    shown = [int(ln.split("->")[0]) for ln in r.stderr.splitlines() if "->" in ln]
    assert shown == case["ids"]


def test_infill_python_api_on_deepseek_shaped_model(tiny_deepseek):
    from ggrun.loader import load
    from ggrun.sampling import SamplingParams

    eng = load(tiny_deepseek, n_ctx=256)
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    out = infill(eng, prefix, suffix, SamplingParams(temperature=0), max_tokens=3)
    assert isinstance(out, str)
    ids = infill_ids(eng.tokenizer, prefix, suffix)
    assert eng.cache.tokens[0][:len(ids)] == ids     # exactly this sequence went through the model
