"""Bad input on the command line: one line on stderr naming the file or flag, exit code 2."""

import shutil
import subprocess
import sys

import pytest


def ggrun(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "ggrun", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_not_a_gguf_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    assert_one_line_error(ggrun("run", "-m", str(p), "-p", "x", "-n", "1"), str(p), "not a GGUF file")


def test_missing_file(tmp_path):
    assert_one_line_error(ggrun("run", "-m", str(tmp_path / "nope.gguf"), "-p", "x"), "nope.gguf", "no such file")


def test_truncated_file(tiny_path, tmp_path):
    p = tmp_path / "cut.gguf"
    p.write_bytes(open(tiny_path, "rb").read()[:-500])
    assert_one_line_error(ggrun("run", "-m", str(p), "-p", "x"), str(p), "truncated")


def test_unknown_architecture(tmp_path):
    from tiny_model import write_tiny_llama

    p = write_tiny_llama(tmp_path / "m.gguf", arch="mamba9")
    assert_one_line_error(ggrun("run", "-m", str(p), "-p", "x"), "mamba9", "not supported")


def test_unsupported_tensor_type(tmp_path, tiny_path):
    """A valid file whose one tensor has a type ggrun can't run: patch Q8_0 → IQ4_NL in the header."""
    raw = bytearray(open(tiny_path, "rb").read())
    name = b"blk.0.ffn_gate.weight"
    i = raw.index(name) + len(name)
    n_dims = int.from_bytes(raw[i:i + 4], "little")
    j = i + 4 + 8 * n_dims
    assert int.from_bytes(raw[j:j + 4], "little") == 8          # Q8_0
    raw[j:j + 4] = (20).to_bytes(4, "little")                   # IQ4_NL: same block size, fewer bytes
    p = tmp_path / "iq.gguf"
    p.write_bytes(bytes(raw))
    r = ggrun("run", "-m", str(p), "-p", "x", "-n", "1")
    assert_one_line_error(r, "blk.0.ffn_gate.weight", "IQ4_NL")


def test_vocab_only_file(vocab_dir, tmp_path):
    p = tmp_path / "vocab.gguf"
    shutil.copy(vocab_dir / "ggml-vocab-deepseek-coder.gguf", p)
    assert_one_line_error(ggrun("run", "-m", str(p), "-p", "x"), str(p), "no tensors")


@pytest.mark.parametrize("flag,value,needle", [
    ("-n", "abc", "-n/--n-predict"),
    ("-c", "-5", "-c/--ctx-size"),
    ("--temp", "hot", "--temp"),
    ("-ngl", "x", "-ngl"),
    ("-ctk", "q4_0", "-ctk/--cache-type-k"),
    ("-ctv", "nope", "-ctv/--cache-type-v"),
])
def test_bad_flag_values(flag, value, needle):
    r = ggrun("run", flag, value, "-p", "x")
    assert_one_line_error(r, needle)


def test_unknown_flag():
    assert_one_line_error(ggrun("run", "--frobnicate"), "--frobnicate")


def test_bad_top_p(tiny_path):
    assert_one_line_error(ggrun("run", "-m", tiny_path, "-p", "x", "--top-p", "3"), "top_p")


def test_kv_cache_too_large(tiny_path):
    assert_one_line_error(ggrun("run", "-m", tiny_path, "-p", "x", "-c", "2000000000"), "-c", "KV cache")


def test_prompt_longer_than_context(tiny_path):
    r = ggrun("run", "-m", tiny_path, "-p", "y" * 300, "-c", "64", "-n", "4")
    assert_one_line_error(r, "context")


def test_missing_prompt_file(tiny_path, tmp_path):
    assert_one_line_error(ggrun("run", "-m", tiny_path, "-f", str(tmp_path / "p.txt")), "-f", "p.txt")


def test_bad_cache_type_in_other_commands():
    assert_one_line_error(ggrun("perplexity", "-ctv", "bf16", "-f", "x.txt"), "-ctv/--cache-type-v", "bf16")
    assert_one_line_error(ggrun("bench", "-ctk", "q5_1"), "-ctk/--cache-type-k", "q5_1")


def test_q8_0_cache_needs_head_dim_multiple_of_32(tiny_path):
    """The tiny model's heads are 16 wide: q8_0 blocks of 32 can't hold them (llama.cpp refuses too)."""
    assert_one_line_error(ggrun("run", "-m", tiny_path, "-p", "x", "-ctk", "q8_0"), "q8_0", "multiple of 32")
