"""Quantization (ggrun.quants.quantize) against llama.cpp's own output.

The golden files in tests/data/quants were written by scripts/make_quant_golden.py,
which runs llama.cpp's quantizers (ggml_quantize_chunk without an imatrix, what
llama-quantize does) on synthetic rows and on rows of SmolLM2's tensors.  This test
reads only those files.  Per type: at least 99.9% of the blocks must be byte-identical
(ggrun reproduces the float32 arithmetic op by op, so in practice all are), and a block
that differs must decode to values within one quantization step of llama.cpp's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ggrun import quants as Q
from ggrun.errors import BadArgumentError
from ggrun.quants import kquants

DATA = Path(__file__).parent / "data" / "quants"
META = json.loads((DATA / "meta.json").read_text())
TYPES = list(META["types"])  # F16, BF16, Q4_0 … Q6_K
INPUTS = {name: np.load(DATA / f"input_{name}.npy") for name in ("random", "model")}


def _step(blocks: torch.Tensor, t: int) -> torch.Tensor:
    """One quantization step of each block: the largest distance between adjacent levels. (N,)"""
    f16 = lambda off: blocks[:, off : off + 2].contiguous().view(torch.float16).float().reshape(-1).abs()  # noqa: E731
    if t in (Q.GGMLType.F16, Q.GGMLType.BF16):
        v = Q.dequantize(blocks, t).abs().reshape(-1)
        return v * (2.0**-10 if t == Q.GGMLType.F16 else 2.0**-7) + 2.0**-24
    if t in (Q.GGMLType.Q4_0, Q.GGMLType.Q4_1, Q.GGMLType.Q5_0, Q.GGMLType.Q5_1, Q.GGMLType.Q8_0):
        return f16(0)
    if t == Q.GGMLType.Q2_K:
        return f16(80) * (blocks[:, :16] & 15).amax(1).float()
    if t == Q.GGMLType.Q3_K:
        return f16(108) * kquants.q3_k_scales(blocks[:, 96:108]).abs().amax(1)
    if t in (Q.GGMLType.Q4_K, Q.GGMLType.Q5_K):
        return f16(0) * kquants.scale_min_k4(blocks[:, 4:16])[0].amax(1).float()
    return f16(208) * blocks[:, 192:208].contiguous().view(torch.int8).float().abs().amax(1)  # Q6_K


def _compare(name: str, device: str = "cpu") -> dict[str, tuple[int, int]]:
    t = META["types"][name]
    ts = Q.type_size(t)
    expected = np.load(DATA / f"expected_{name}.npz")
    counts = {}
    for which, x in INPUTS.items():
        got = Q.quantize(torch.from_numpy(x).to(device), t).cpu()
        exp = torch.from_numpy(expected[which])
        assert got.shape == exp.shape and got.dtype == torch.uint8
        g, e = got.reshape(-1, ts), exp.reshape(-1, ts)
        bad = (g != e).any(1)
        counts[which] = (int(bad.sum()), bad.numel())
        if bad.any():  # every differing block decodes within one step of llama.cpp's
            dg, de = Q.dequantize(g[bad], t), Q.dequantize(e[bad], t)
            step = _step(e[bad], t)
            assert torch.isfinite(dg).all()
            worst = ((dg - de).abs().amax(1) / step).max().item()
            assert worst <= 1.0 + 1e-6, f"{name}/{which}: a differing block is {worst:.2f} steps away"
    return counts


@pytest.mark.parametrize("name", TYPES)
def test_quantize_matches_llama_cpp(name):
    counts = _compare(name)
    bad = sum(b for b, _ in counts.values())
    total = sum(n for _, n in counts.values())
    exact = 100.0 * (1 - bad / total)
    print(f"{name}: {exact:.3f}% of {total} blocks byte-identical {counts}")
    assert exact >= 99.9, f"{name}: only {exact:.3f}% of the blocks match llama.cpp ({counts})"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", TYPES)
def test_quantize_on_cuda_matches_llama_cpp(name):
    counts = _compare(name, "cuda")
    assert all(b == 0 for b, _ in counts.values()), counts


# Relative RMS error of quantize -> dequantize on N(0, 1) data: upper bounds per type,
# about 1.3x what llama.cpp's algorithms reach on this data.
ROUND_TRIP_RMSE = {
    "F16": 3e-4, "BF16": 2.5e-3, "Q8_0": 0.007, "Q6_K": 0.024, "Q5_0": 0.055, "Q5_1": 0.05, "Q5_K": 0.048,
    "Q4_0": 0.11, "Q4_1": 0.1, "Q4_K": 0.095, "Q3_K": 0.2, "Q2_K": 0.39,
}


@pytest.mark.parametrize("name", TYPES)
def test_round_trip_error_is_small(name):
    t = Q.GGMLType[name]
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((3, 4, 512)).astype(np.float32))
    q = Q.quantize(x, t)
    assert q.shape == (3, 4, Q.row_bytes(t, 512)) and q.dtype == torch.uint8
    y = Q.dequantize(q, t)
    assert y.shape == x.shape
    rel = ((y - x).pow(2).mean() / x.pow(2).mean()).sqrt().item()
    assert rel < ROUND_TRIP_RMSE[name], f"{name}: relative RMS error {rel:.4f}"
    # quantizing numpy input gives the same bytes
    assert torch.equal(Q.quantize(x.numpy(), t), q)


def test_quantize_edge_cases():
    x = torch.zeros(2, 256)
    for name in TYPES:
        t = Q.GGMLType[name]
        q = Q.quantize(x, t)
        assert torch.equal(Q.dequantize(q, t), x), name  # zeros stay zeros
    f = torch.randn(5, 64)
    assert torch.equal(Q.quantize(f, Q.GGMLType.F32).view(torch.float32), f)
    with pytest.raises(BadArgumentError):
        Q.quantize(torch.randn(2, 100), Q.GGMLType.Q4_0)
    with pytest.raises(BadArgumentError):
        Q.quantize(torch.randn(2, 288), Q.GGMLType.Q4_K)
