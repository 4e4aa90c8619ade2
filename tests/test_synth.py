"""ggrun synth: exact shapes and mixes, valid random blocks, a file ggrun runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ggrun.gguf_file import GGUFFile
from ggrun.quantize import TYPE_NAMES
from ggrun.synth import PRESETS, random_blocks, synth

GOLDEN = json.loads((Path(__file__).parent / "data" / "quantize" / "mixes.json").read_text())
CODES = {c: t for t, c in GOLDEN["type_codes"].items()}


@pytest.mark.parametrize("t", sorted(TYPE_NAMES))
def test_random_blocks_are_valid(t):
    from ggrun.quants import dequantize

    b = random_blocks(t, 4096, np.random.default_rng(0))
    w = dequantize(b.reshape(64, -1), t)
    assert torch.isfinite(w).all()
    s = float(w.std())
    assert 1e-3 < s < 0.2, (TYPE_NAMES[t], s)


@pytest.mark.parametrize("model,size", [("deepseek-coder-33b", 19_940_529_888), ("deepseek-coder-6.7b", 4_082_886_624)])
def test_deepseek_q4_k_m_sizes_match_the_anchor_files(tmp_path, vocab_dir, model, size):
    """anchors.md's llama.cpp benchmark files: same bytes count with the DeepSeek Coder vocab."""
    out = tmp_path / "m.gguf"
    r = synth(model, str(out), "Q4_K_M", vocab=str(vocab_dir / "ggml-vocab-deepseek-coder.gguf"), sparse=True)
    assert r.file_size == size
    f = GGUFFile(out)
    assert f.metadata["llama.rope.scaling.type"] == "linear" and f.metadata["llama.rope.scaling.factor"] == 4.0
    assert f.metadata["tokenizer.ggml.pre"] == "deepseek-coder" and len(f.metadata["tokenizer.ggml.tokens"]) == 32256
    assert f.metadata["general.file_type"] == 15
    want = [CODES[c] for c in GOLDEN["synthetic"][model]["mixes"]["Q4_K_M"]["types"]]
    assert [t.type_name for t in f.tensors.values()] == want


@pytest.fixture(scope="module")
def smol_synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "smol.gguf"
    r = synth("smollm2-135m", str(out), "Q4_K_M", seed=1)
    print(f"\nsynth smollm2-135m Q4_K_M: {r.file_size / 1e6:.1f} MB in {r.seconds:.2f} s "
          f"({r.file_size / r.seconds / 1e9:.2f} GB/s)")
    return out


def test_smollm2_synth_mix_and_blocks(smol_synth, smollm2_path):
    from ggrun.quants import dequantize

    f = GGUFFile(smol_synth)
    want = [CODES[c] for c in GOLDEN["synthetic"]["smollm2-135m"]["mixes"]["Q4_K_M"]["types"]]
    assert [t.type_name for t in f.tensors.values()] == want
    real = GGUFFile(smollm2_path)
    assert f.metadata["tokenizer.ggml.tokens"] == real.metadata["tokenizer.ggml.tokens"]
    assert {n: t.shape for n, t in f.tensors.items()} == {n: t.shape for n, t in real.tensors.items()}
    for name in ("token_embd.weight", "blk.0.attn_v.weight", "blk.0.ffn_down.weight", "blk.29.ffn_up.weight"):
        t = f.tensors[name]
        w = dequantize(t.data, t.ggml_type)
        assert torch.isfinite(w).all() and float(w.abs().max()) < 2.0, name
    norms = [t for n, t in f.tensors.items() if n.endswith("norm.weight")]
    assert all(np.isfinite(np.asarray(t.data).view(np.float32)).all() for t in norms)


def test_ggrun_runs_the_synth_model(smol_synth):
    from ggrun.loader import load

    eng = load(str(smol_synth), n_ctx=64, n_threads=2)
    logits = eng.eval([1, 2, 3, 4], all_logits=True)
    assert logits.shape == (4, 49152) and torch.isfinite(logits).all()


def test_same_seed_same_file(tmp_path):
    from ggrun.synth import Shape

    s = Shape("tiny", 256, 2, 4, 2, 512, 300, 512)
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    synth(s, str(a), "Q4_K_M", seed=3)
    synth(s, str(b), "Q4_K_M", seed=3)
    assert a.read_bytes() == b.read_bytes()
    f = GGUFFile(a)
    assert f.tensors["blk.0.attn_v.weight"].type_name == "Q4_K" and f.tensors["blk.1.attn_v.weight"].type_name == "Q6_K" and f.tensors["output.weight"].type_name == "Q6_K"


def test_placeholder_vocab_loads_and_tokenizes(tmp_path):
    """A shape with no vocab at hand gets the placeholder byte-level vocab: the file loads (its BPE
    vocab has the merges key, empty), text goes byte by byte, and the model generates."""
    from ggrun.synth import Shape

    s = Shape("tiny", 256, 1, 4, 2, 512, 300, 512)
    path = tmp_path / "p.gguf"
    synth(s, str(path), "Q4_0", seed=1)
    assert GGUFFile(path).metadata["tokenizer.ggml.merges"] == []
    from ggrun.engine import SamplingParams
    from ggrun.loader import load

    eng = load(str(path), n_ctx=64, n_threads=2)
    ids = eng.tokenizer.encode("héllo", add_bos=False)
    assert ids == list("héllo".encode()) and eng.tokenizer.decode(ids) == "héllo"
    events = list(eng.generate(ids, SamplingParams(temperature=0.0), max_tokens=3, ignore_eos=True))
    assert sum(e.token is not None for e in events) == 3


def test_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ggrun", "synth", "--like", "gpt-5", str(tmp_path / "o.gguf")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown model" in r.stderr and not list(tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "ggrun", "synth", "--like", "deepseek-coder-1.3b", "--type", "Q9",
                        str(tmp_path / "o.gguf")], capture_output=True, text=True)
    assert r.returncode == 2 and "Q9" in r.stderr and not list(tmp_path.iterdir())
    assert set(PRESETS) == {"deepseek-coder-33b", "deepseek-coder-6.7b", "deepseek-coder-1.3b", "smollm2-135m"}
