"""ggrun.tokenizer against llama.cpp.

* llama.cpp's own tokenizer test vectors (tests/data/vocab/ggml-vocab-*.gguf + .inp/.out,
  from `make setup`), read as its tests/test-tokenizer-0.cpp does: strings separated by
  "\\n__ggml_vocab_test__\\n", no BOS, special tokens not parsed.
* tests/data/golden/smollm2_tokenize.json: llama-tokenize's ids for the real SmolLM2 vocab
  (scripts/make_tokenizer_golden.py).
* decoding, streaming, special ids and parsing, speed.
"""

from __future__ import annotations

import functools
import json
import random
import time
from pathlib import Path

import pytest

from ggrun.errors import GGUFFormatError, UnsupportedModelError
from ggrun.gguf_file import GGUFFile
from ggrun.pretokenize import PreTokenizer
from ggrun.tokenizer import StreamDecoder, Tokenizer

DATA = Path(__file__).resolve().parent / "data"
VOCAB_DIR = DATA / "vocab"
GOLDEN = DATA / "golden" / "smollm2_tokenize.json"
MUST_PASS = {"deepseek-coder", "deepseek-llm", "gpt-2", "llama-bpe", "llama-spm", "phi-3", "qwen2", "starcoder"}
SEP = "\n__ggml_vocab_test__\n"
CLEANED = (" ?", " !", " .", " ,", " '")  # what llama_detokenize's clean_spaces rewrites


def _vocab_names() -> list:
    names = sorted(p.name[len("ggml-vocab-"):-len(".gguf.inp")] for p in VOCAB_DIR.glob("ggml-vocab-*.gguf.inp"))
    if not names:  # never skip silently: a missing fixture folder is a failure
        return [pytest.param(None, id="fixtures-missing")]
    return names


VOCABS = _vocab_names()


def _need_fixtures(name):
    if name is None or not (VOCAB_DIR / f"ggml-vocab-{name}.gguf").exists():
        pytest.fail(f"llama.cpp's vocab fixtures are missing from {VOCAB_DIR}: run `make setup`")


@functools.lru_cache(maxsize=None)
def _metadata(name: str) -> dict:
    return GGUFFile(VOCAB_DIR / f"ggml-vocab-{name}.gguf").metadata


@functools.lru_cache(maxsize=None)
def _tok(name: str) -> Tokenizer:
    _need_fixtures(name)
    md = _metadata(name)
    if md.get("tokenizer.ggml.model") not in ("gpt2", "llama", "gemma4"):
        pytest.skip(f"{name}: tokenizer.ggml.model '{md.get('tokenizer.ggml.model')}' is not BPE or SPM")
    return Tokenizer.from_metadata(md)


def _cases(name: str) -> list[tuple[str, list[int]]]:
    """(text, ids) pairs exactly as test-tokenizer-0.cpp reads them."""
    raw = (VOCAB_DIR / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8")
    texts, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(SEP, pos)
        if nxt < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:nxt])
        pos = nxt + len(SEP)
    lines = (VOCAB_DIR / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    assert len(lines) >= len(texts)
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]


# ------------------------------------------------------------------ llama.cpp's vectors


@pytest.mark.parametrize("name", VOCABS)
def test_llama_cpp_vocab_vectors(name):
    tok = _tok(name)
    cases = _cases(name)
    bad = [(text, tok.encode(text, add_bos=False, parse_special=False), ids) for text, ids in cases
           if tok.encode(text, add_bos=False, parse_special=False) != ids]
    detail = "\n".join(f"  {t!r}:\n    got      {g}\n    expected {e}" for t, g, e in bad[:5])
    assert not bad, f"{name}: {len(bad)}/{len(cases)} texts differ from llama.cpp\n{detail}"


def test_must_have_vocabs_present():
    names = {v for v in VOCABS if isinstance(v, str)}
    missing = MUST_PASS - names
    if missing or not names:
        pytest.fail(f"vocab fixtures missing ({sorted(missing) or 'all'}): run `make setup`")


@pytest.mark.parametrize("name", VOCABS)
def test_roundtrip(name):
    """The pieces of encode(x) are exactly x's bytes; decode gives x back (up to llama.cpp's
    clean_spaces rewrites, for the vocabs that have them)."""
    tok = _tok(name)
    for text, _ in _cases(name):
        ids = tok.encode(text, add_bos=False, parse_special=False)
        prefix = " " if tok.add_space_prefix and text else ""
        assert b"".join(tok.token_to_piece(i) for i in ids) == (prefix + text).encode(), text
        if not tok.clean_spaces or not any(c in text for c in CLEANED):
            assert tok.decode(ids) == text


# ------------------------------------------------------------------ SmolLM2 (the real model's vocab)


@pytest.fixture(scope="module")
def smollm2(smollm2_path) -> Tokenizer:
    return Tokenizer.from_gguf(smollm2_path)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_smollm2_chat_prompt(smollm2):
    ids = smollm2.encode("<|im_start|>user\nWrite a quick sort in Python.<|im_end|>\n")
    assert ids == [1, 4093, 198, 19161, 253, 2365, 4440, 281, 5905, 30, 2, 198]  # llama-tokenize
    assert smollm2.pre == "smollm" and smollm2.model == "gpt2" and not smollm2.add_bos


def test_smollm2_golden(smollm2, golden):
    assert len(golden["cases"]) >= 10
    for case in golden["cases"]:
        assert smollm2.encode(case["text"]) == case["ids"], case["text"]
        assert smollm2.encode(case["text"], parse_special=False) == case["ids_no_parse_special"], case["text"]


def test_smollm2_special_ids(smollm2):
    # llama.cpp: no EOT key in the file, so EOT is the first of its known texts met while
    # walking its token map: <|endoftext|> (0) before <|im_end|> (2); EOG also has <|repo_name|>
    assert (smollm2.bos_id, smollm2.eos_id, smollm2.eot_id) == (1, 2, 0)
    assert smollm2.eog_ids == {0, 2, 4} and smollm2.is_eog(2) and not smollm2.is_eog(1)
    assert smollm2.fim_rep_id == 4 and smollm2.fim_pre_id is None
    assert smollm2.token_id("<|im_end|>") == 2 and smollm2.token_text(2) == "<|im_end|>"


@pytest.mark.parametrize("name,eot", [("qwen2", 151645), ("phi-3", 32007), ("llama-bpe", 128009), ("command-r", None)])
def test_eot_detected_like_llama_cpp(name, eot):
    """Several EOT-looking tokens and no eot key: llama.cpp's pick depends on its hash-map walk."""
    assert _tok(name).eot_id == eot


# ------------------------------------------------------------------ special tokens


def test_deepseek_coder_special_parsing(golden):
    tok = _tok("deepseek-coder")
    for case in golden["deepseek_coder"]["cases"]:
        assert tok.encode(case["text"]) == case["ids"], case["text"]
        assert tok.encode(case["text"], parse_special=False) == case["ids_no_parse_special"], case["text"]
    eos = "<\uff5cend\u2581of\u2581sentence\uff5c>"
    assert tok.encode(eos, add_bos=False) == [32014]
    assert 32014 not in tok.encode(eos, add_bos=False, parse_special=False)
    # <|EOT|> is USER_DEFINED in this vocab: llama.cpp always matches those, parse_special or not
    assert tok.encode("a<|EOT|>b", add_bos=False) == tok.encode("a<|EOT|>b", add_bos=False, parse_special=False)
    assert 32021 in tok.encode("a<|EOT|>b", add_bos=False)


def test_deepseek_coder_special_ids():
    tok = _tok("deepseek-coder")
    assert (tok.bos_id, tok.eos_id) == (32013, 32014) and tok.add_bos
    # the base vocab has no eot key: llama.cpp takes <｜end▁of▁sentence｜> (32014) by its text
    assert tok.eot_id == 32014 and tok.eog_ids == {32014}
    assert (tok.fim_pre_id, tok.fim_suf_id, tok.fim_mid_id) == (32016, 32015, 32017)
    # instruct GGUFs carry tokenizer.ggml.eot_token_id = 32021 (<|EOT|>)
    md = dict(_metadata("deepseek-coder"), **{"tokenizer.ggml.eot_token_id": 32021})
    inst = Tokenizer.from_metadata(md)
    assert inst.eot_id == 32021 and inst.eog_ids == {32014, 32021} and inst.is_eog(32021)


def test_add_bos_defaults():
    assert _tok("llama-spm").add_bos and _tok("llama-spm").encode("Hi")[0] == 1
    assert _tok("llama-bpe").add_bos  # llama3: BOS by default even without the key
    assert _tok("llama-bpe").encode("Hi", add_bos=False) == _tok("llama-bpe").encode("Hi")[1:]
    assert not _tok("qwen2").add_bos and not _tok("gpt-2").add_bos
    assert _tok("gpt-2").encode("Hi", add_bos=True)[0] == _tok("gpt-2").bos_id


def test_phi3_rstrip_after_special():
    tok = _tok("phi-3")
    # llama.cpp sets rstrip on phi-3's special tokens: the whitespace after <|user|> goes away
    assert tok.encode("<|user|>\n  Hi", add_bos=False) == tok.encode("<|user|>Hi", add_bos=False)
    assert tok.encode("<|user|>", add_bos=False) == [32010]


# ------------------------------------------------------------------ decoding


def test_token_to_piece_kinds():
    spm = _tok("llama-spm")
    assert spm.token_to_piece(spm.encode("\U0001f999", add_bos=False)[1]) == b"\xf0"  # <0xF0> byte token
    assert spm.token_to_piece(1) == b"<s>" and spm.token_to_piece(1, special=False) == b""
    hello = spm.encode(" Hello", add_bos=False)
    assert b"".join(spm.token_to_piece(i) for i in hello) == b"  Hello"  # U+2581 -> space
    gpt2 = _tok("gpt-2")
    assert b"".join(gpt2.token_to_piece(i) for i in gpt2.encode("héllo 🦙")) == "héllo 🦙".encode()


def test_decode_like_llama_detokenize():
    text = "Hello , world ! I 'm here , it 's ' ok ' you 're . They 've won ? don 't 'll"
    gpt2 = _tok("gpt-2")  # clean_spaces vocab (llama.cpp's output)
    assert gpt2.decode(gpt2.encode(text)) == "Hello, world! I'm here, it's'ok'you're. They've won? don 't 'll"
    spm = _tok("llama-spm")
    ids = spm.encode(text)
    assert spm.decode(ids) == "<s> " + text
    assert spm.decode(ids, skip_special=True) == " " + text
    assert spm.decode(ids[1:]) == text  # first piece's prefix space dropped


def test_stream_decoder_holds_partial_utf8():
    text = "naïve 🦙 中文 ✅ 😶\u200d🌫️"
    for name in ("gpt-2", "llama-spm"):
        tok = _tok(name)
        ids = tok.encode(text, add_bos=False)
        pieces = [tok.token_to_piece(i) for i in ids]
        assert any(_is_partial(p) for p in pieces), f"{name}: no token splits a character"
        stream = tok.stream()
        assert isinstance(stream, StreamDecoder)
        outs = [stream.feed(i) for i in ids]
        assert "" in outs and all("\ufffd" not in o for o in outs)
        got = "".join(outs) + stream.flush()
        assert got == ((" " if tok.add_space_prefix else "") + text)
    stream = StreamDecoder(_tok("gpt-2"))
    stream.feed(_tok("gpt-2").encode("🦙")[0])  # first byte(s) of a 4-byte char only
    assert stream.flush() == "\ufffd"


def _is_partial(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


# ------------------------------------------------------------------ pre-tokenizer details


def test_pretokenizer_llama3_pieces():
    words = PreTokenizer("LLAMA3").split("Hello, y'all! How are you 😁 ?我想在apple工作1314151天～  \n\n x")
    assert words == ["Hello", ",", " y", "'all", "!", " How", " are", " you", " 😁", " ?", "我想在apple工作",
                     "131", "415", "1", "天", "～", "  \n\n", " x"]


def test_pretokenizer_deepseek_coder_pieces():
    words = PreTokenizer("DEEPSEEK_CODER").split("x = 12\n\tif a:\u3000b")
    # "[\r\n]", "\s?\p{L}+", "\s?\p{P}+", CJK runs, "\p{N}" in turn; '=' is a symbol, not \p{P};
    # U+3000 is whitespace for \s
    assert words == ["x", " = ", "1", "2", "\n", "\tif", " a", ":", "\u3000b"]


# ------------------------------------------------------------------ errors and speed


def test_unsupported_and_broken_metadata():
    md = dict(_metadata("gpt-2"))
    with pytest.raises(UnsupportedModelError, match="pre-tokenizer"):
        Tokenizer.from_metadata({**md, "tokenizer.ggml.pre": "no-such-pre"})
    with pytest.raises(UnsupportedModelError, match="bert"):
        Tokenizer.from_metadata({**md, "tokenizer.ggml.model": "bert"})
    with pytest.raises(GGUFFormatError):
        Tokenizer.from_metadata({"general.architecture": "llama"})
    with pytest.raises(GGUFFormatError, match="merges"):
        Tokenizer.from_metadata({k: v for k, v in md.items() if k != "tokenizer.ggml.merges"})


def test_speed_10k_chars_of_code():
    tok = _tok("deepseek-coder")
    rng = random.Random(0)
    lines = []
    while sum(map(len, lines)) < 10_000:
        ident = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 12)))
        lines.append(f"    {ident}_{rng.randint(0, 999)} = compute({ident!r}, [{rng.random():.4f}, 0x{rng.randint(0, 65535):x}])  # é→✓\n")
    code = "".join(lines)[:10_000]
    t = time.perf_counter()
    ids = tok.encode(code)
    dt = time.perf_counter() - t
    assert len(ids) > 2000
    assert dt < 1.0, f"encoding 10,000 chars took {dt * 1e3:.0f} ms"  # ~20 ms here; generous for busy CI
