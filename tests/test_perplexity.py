"""ggrun perplexity: llama-perplexity's method, numbers and KL-divergence file format.

llama.cpp's side (tests/data/text/perplexity_golden.json, made by
`scripts/quality_table.py --test-golden`): SmolLM2 Q4_1, -c 64, the first 4 chunks of
tests/data/text/quality.txt: running PPL, each scored token's NLL and top token, and the KL
divergence of llama-quantize's Q8_0 file against the Q4_1 original.
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
import torch

from ggrun.perplexity import (_chunk_stats, _summary, decode_log_probs, encode_log_probs, kl_divergence, perplexity,
                              read_kld_base, tokenize_text)

DATA = Path(__file__).parent / "data" / "text"
GOLDEN = json.loads((DATA / "perplexity_golden.json").read_text())
N_CTX = GOLDEN["n_ctx"]


@pytest.fixture(scope="module")
def engine(smollm2_path):
    from ggrun.loader import load

    return load(smollm2_path, n_ctx=N_CTX, n_threads=2)


def test_tokens_are_llama_cpps(engine):
    toks = tokenize_text(engine.tokenizer, (DATA / "quality.txt").read_text(encoding="utf-8"))
    assert toks[:len(GOLDEN["tokens"])] == GOLDEN["tokens"]
    assert 4600 < len(toks) < 4900          # ~4.7k tokens: 18 chunks of 256


@pytest.fixture(scope="module")
def q4_1_run(engine, tmp_path_factory):
    base = tmp_path_factory.mktemp("kld") / "base.kld"
    r = perplexity(engine, GOLDEN["tokens"], N_CTX, kld_base_out=str(base), out=None)
    return r, base


def test_perplexity_matches_llama_cpp(q4_1_run):
    r, _ = q4_1_run
    g = GOLDEN["q4_1"]
    assert r.n_chunks == 4 and r.n_scored == 4 * (N_CTX - 1 - N_CTX // 2)
    # llama.cpp rounds the activations to 8-bit blocks (Q8_1) for its Q4_1 dot products: each token's
    # NLL moves by ~0.07 nats either way, so the 31-token first chunk can differ by a few percent;
    # the differences average out (no bias) and the final PPL agrees within 0.5%
    for a, b in zip(r.chunk_ppl, g["chunk_ppl"]):
        assert abs(a / b - 1) < 0.05, (r.chunk_ppl, g["chunk_ppl"])
    assert abs(r.ppl / g["ppl"] - 1) < 0.005
    assert abs(r.ppl_err / g["ppl_err"] - 1) < 0.05
    d = r.nll - np.array(g["nll"])
    assert abs(d.mean()) < 0.02 and np.abs(d).mean() < 0.1


def test_saved_base_is_llama_cpps_format(q4_1_run):
    r, base = q4_1_run
    n_ctx, n_vocab, n_chunk, toks, rows = read_kld_base(str(base))
    assert (n_ctx, n_vocab, n_chunk) == (N_CTX, 49152, 4) and list(toks) == GOLDEN["tokens"]
    nv = 2 * ((n_vocab + 1) // 2) + 4
    assert base.stat().st_size == 20 + 4 * n_ctx * n_chunk + 2 * nv * n_chunk * (n_ctx - 1 - n_ctx // 2)
    lp = decode_log_probs(np.asarray(rows), n_vocab)
    top = lp.argmax(axis=1)
    assert (top == np.array(GOLDEN["q4_1"]["top"])).mean() > 0.95
    first = n_ctx // 2
    tgt = [int(toks[c * n_ctx + j + 1]) for c in range(n_chunk) for j in range(first, n_ctx - 1)]
    nll = -lp[np.arange(len(tgt)), tgt]
    np.testing.assert_allclose(nll, r.nll, atol=2e-3)      # 16-bit storage of what was measured


def test_kld_of_a_model_with_itself_is_zero(engine, q4_1_run):
    _, base = q4_1_run
    k = kl_divergence(engine, str(base), out=None)
    assert k.n == 4 * 31 and k.same_top == 1.0
    assert abs(k.kld_mean) < 1e-4 and abs(k.ln_ratio) < 1e-4
    assert math.isclose(k.ppl, k.ppl_base, rel_tol=1e-3)


def test_kld_q8_0_vs_q4_1_matches_llama_cpp(smollm2_path, q4_1_run, tmp_path):
    """Mean KLD and same-top of the Q8_0 requantization against the Q4_1 original, as llama-perplexity gives them."""
    from ggrun.loader import load
    from ggrun.quantize import quantize_file

    _, base = q4_1_run
    q8 = tmp_path / "q8_0.gguf"
    quantize_file(smollm2_path, str(q8), "Q8_0", allow_requantize=True)
    k = kl_divergence(load(str(q8), n_ctx=N_CTX, n_threads=2), str(base), out=None)
    g = GOLDEN["q8_0_vs_q4_1"]
    assert abs(k.ppl / g["ppl_q"] - 1) < 0.01 and abs(k.ppl_base / g["ppl_base"] - 1) < 0.01
    assert abs(k.kld_mean - g["kld"]) < 0.3 * g["kld"] + 5e-4
    assert abs(100 * k.same_top - g["same_top"]) <= 3.5         # 124 positions: ± 4 tokens


def test_encode_matches_llama_cpps_formula():
    """encode_log_probs against a direct float32 transcription of perplexity.cpp's log_softmax (uint16 form)."""
    rng = np.random.default_rng(0)
    logits = (4 * rng.standard_normal((5, 1001))).astype(np.float32)
    logits[3, :] = logits[3, 0]                                       # a flat row: scale 0
    got = encode_log_probs(torch.from_numpy(logits))
    for r, row in enumerate(logits):
        mx, mn = np.float32(row.max()), np.float32(row.min())
        mn = np.float32(max(mn, mx - np.float32(16)))
        s = np.sum(np.exp(row - mx, dtype=np.float32), dtype=np.float64)
        lse = np.float32(math.log(s))
        min_lp = np.float32(mn - mx - lse)
        scale = np.float32((mx - mn) / np.float32(65535))
        head = np.array([scale, min_lp], "<f4").view("<u2")
        assert list(got[r, :4]) == list(head)
        if scale:
            inv = np.float32(1) / scale
            want = np.where(row > mn, np.rint(inv * (row - mn)), 0).astype(np.uint16)
        else:
            want = np.zeros(1001, np.uint16)
        assert np.array_equal(got[r, 4:4 + 1001], want)
        assert got.shape[1] == 2 * ((1001 + 1) // 2) + 4


def test_kld_statistics_on_known_distributions():
    rng = np.random.default_rng(1)
    base_logits = torch.from_numpy((2 * rng.standard_normal((40, 300))).astype(np.float32))
    q_logits = base_logits + 0.3 * torch.from_numpy(rng.standard_normal((40, 300)).astype(np.float32))
    targets = torch.from_numpy(rng.integers(0, 300, 40))
    base_lp = torch.from_numpy(decode_log_probs(encode_log_probs(base_logits), 300))
    acc = dict(nll=[], nll_base=[], kld=[], p_diff=[], top=[], top_base=[])
    _chunk_stats(q_logits, targets, base_lp, acc)
    r = _summary(acc)
    p = torch.log_softmax(base_logits.double(), -1)
    q = torch.log_softmax(q_logits.double(), -1)
    keep = p > -16
    exact = (p.exp() * (p - q) * keep).sum(-1).mean().item()
    assert abs(r.kld_mean - exact) < 1e-3
    assert r.same_top == (q_logits.argmax(-1) == base_logits.argmax(-1)).double().mean().item()


def test_cli_final_line_and_errors(smollm2_path, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("Only a few words.")
    r = subprocess.run([sys.executable, "-m", "ggrun", "perplexity", "-m", smollm2_path, "-f", short, "-c", "64"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "at least 128 tokens" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ggrun", "perplexity", "-m", smollm2_path, "--kl-divergence"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--kl-divergence-base" in r.stderr
    bad = tmp_path / "bad.kld"
    bad.write_bytes(b"not a logits file at all")
    r = subprocess.run([sys.executable, "-m", "ggrun", "perplexity", "-m", smollm2_path, "--kl-divergence",
                        "--kl-divergence-base", bad], capture_output=True, text=True)
    assert r.returncode == 2 and "does not look like" in r.stderr
    text = tmp_path / "t.txt"
    text.write_text((DATA / "quality.txt").read_text(encoding="utf-8")[:2000])
    r = subprocess.run([sys.executable, "-m", "ggrun", "perplexity", "-m", smollm2_path, "-f", text, "-c", "64",
                        "--chunks", "2", "-t", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("Final estimate: PPL = ") and " +/- " in lines[-1]
    assert lines[-2].startswith("[1]") and "[2]" in lines[-2]


def test_read_kld_base_truncated(tmp_path):
    p = tmp_path / "t.kld"
    p.write_bytes(b"_logits_" + struct.pack("<iii", 64, 100, 2) + b"\0" * 40)
    from ggrun.errors import GGRunError

    with pytest.raises(GGRunError, match="truncated"):
        read_kld_base(str(p))
