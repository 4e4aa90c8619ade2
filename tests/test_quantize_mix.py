"""ggrun quantize: llama-quantize's per-tensor mixes, file sizes and bytes, bad input.

The expected types come from llama-quantize itself (tests/data/quantize/mixes.json, made
by scripts/make_quantize_golden.py): for SmolLM2-135M-Instruct Q4_1 the files it wrote,
for the DeepSeek Coder / SmolLM2 shapes its --dry-run plans.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ggrun.gguf_file import GGUFFile
from ggrun.quantize import (FTYPES, SEED_TYPES, TYPE_NAMES, parse_ftype, parse_ggml_type, plan_quantize,
                            predicted_file_size, quantize_file, tensor_order)

GOLDEN = json.loads((Path(__file__).parent / "data" / "quantize" / "mixes.json").read_text())
CODES = {c: t for t, c in GOLDEN["type_codes"].items()}
SMOL = GOLDEN["smollm2"]


def decode(types: str) -> list[str]:
    return [CODES[c] for c in types]


def _plan_args(entry: dict) -> dict:
    kw, fl = {}, list(entry["flags"])
    while fl:
        f = fl.pop(0)
        if f == "--pure":
            kw["pure"] = True
        elif f == "--output-tensor-type":
            kw["output_tensor_type"] = parse_ggml_type(fl.pop(0))
        elif f == "--token-embedding-type":
            kw["token_embedding_type"] = parse_ggml_type(fl.pop(0))
    return kw


@pytest.fixture(scope="module")
def smol(smollm2_path) -> GGUFFile:
    return GGUFFile(smollm2_path)


def test_golden_source_is_this_file(smol):
    assert smol.file_size == SMOL["source"]["size"]


@pytest.mark.parametrize("key", list(SMOL["mixes"]))
def test_smollm2_mix_types_and_size(smol, key):
    """Same type for every tensor, same order and the same file size as llama-quantize."""
    entry = SMOL["mixes"][key]
    plans = plan_quantize(smol, entry["type"], **_plan_args(entry))
    assert list(plans) == SMOL["tensors"]
    got = [TYPE_NAMES[p.dst_type] for p in plans.values()]
    want = decode(entry["types"])
    diff = [(n, g, w) for n, g, w in zip(plans, got, want) if g != w]
    assert not diff, f"{key}: {len(diff)} tensors differ, e.g. {diff[:5]}"
    assert sum(p.fallback for p in plans.values()) == entry["n_fallback"]
    size = predicted_file_size(smol, plans, parse_ftype(entry["type"]))
    assert size == entry["file_size"]          # exact (the issue asks ±0.1%)


def test_smollm2_fallback_count_matches_anchor(smol):
    # anchors.md: llama-quantize falls back for 180 of SmolLM2's 272 tensors
    plans = plan_quantize(smol, "Q4_K_M")
    assert len(plans) == 272 and sum(p.fallback for p in plans.values()) == 180


@pytest.mark.parametrize("model", list(GOLDEN["synthetic"]))
def test_synthetic_shape_mixes(model):
    """DeepSeek Coder 33B/6.7B/1.3B and SmolLM2 shapes: llama-quantize --dry-run's choices."""
    from ggrun.synth import PRESETS, virtual_model

    entry = GOLDEN["synthetic"][model]
    src = virtual_model(PRESETS[model])
    for qtype, m in entry["mixes"].items():
        plans = plan_quantize(src, qtype)
        names = list(plans)
        assert hashlib.sha256("\n".join(names).encode()).hexdigest() == entry["names_sha256"]
        got = [TYPE_NAMES[p.dst_type] for p in plans.values()]
        want = decode(m["types"])
        diff = [(n, g, w) for n, g, w in zip(names, got, want) if g != w]
        assert not diff, f"{model} {qtype}: {len(diff)} tensors differ, e.g. {diff[:5]}"
        mib = sum(p.n_bytes for p in plans.values()) / 2**20
        assert abs(mib - m["quant_size_mib"]) < 0.006


def test_tensor_order_is_llama_loaders():
    names = ["blk.10.attn_q.weight", "token_embd.weight", "blk.2.ffn_up.weight", "blk.2.attn_k.weight",
             "output_norm.weight", "output.weight"]
    assert tensor_order(names) == ["output.weight", "output_norm.weight", "token_embd.weight",
                                   "blk.2.attn_k.weight", "blk.2.ffn_up.weight", "blk.10.attn_q.weight"]


def _fake(n_layer=80, n_head=64, n_head_kv=8, n_embd=256, n_ff=512, n_expert=0):
    md = {"general.architecture": "llama", "llama.block_count": n_layer, "llama.attention.head_count": n_head,
          "llama.attention.head_count_kv": n_head_kv}
    if n_expert:
        md["llama.expert_count"] = n_expert
    t = {"token_embd.weight": (1024, n_embd), "output.weight": (1024, n_embd), "output_norm.weight": (n_embd,)}
    hd = n_embd // n_head
    for i in range(n_layer):
        t.update({f"blk.{i}.attn_q.weight": (n_embd, n_embd), f"blk.{i}.attn_k.weight": (n_head_kv * hd, n_embd),
                  f"blk.{i}.attn_v.weight": (n_head_kv * hd, n_embd), f"blk.{i}.attn_output.weight": (n_embd, n_embd),
                  f"blk.{i}.ffn_down.weight": (n_embd, n_ff), f"blk.{i}.attn_norm.weight": (n_embd,)})
    return SimpleNamespace(metadata=md, architecture="llama",
                           tensors={k: SimpleNamespace(shape=s, ggml_type=1) for k, s in t.items()})


def test_70b_attn_v_gets_q5_k():
    """llama.cpp's LLM_TYPE_70B rule (80 layers, GQA): attn_v Q3_K/Q4_K → Q5_K."""
    p = plan_quantize(_fake(), "Q4_K_S")
    assert {TYPE_NAMES[p[f"blk.{i}.attn_v.weight"].dst_type] for i in range(4, 80)} == {"Q5_K"}
    p = plan_quantize(_fake(n_head_kv=64), "Q4_K_S")       # 80 layers without GQA: 65B, no bump
    assert TYPE_NAMES[p["blk.10.attn_v.weight"].dst_type] == "Q4_K"


def test_eight_experts_bump_attn_v_and_k_to_q8_0():
    p = plan_quantize(_fake(n_layer=8, n_expert=8), "Q4_K_M")
    assert TYPE_NAMES[p["blk.3.attn_v.weight"].dst_type] == "Q8_0"


def test_row_not_multiple_of_32_falls_back_to_f16():
    src = _fake(n_layer=1, n_embd=48, n_head=3, n_head_kv=3, n_ff=96)
    p = plan_quantize(src, "Q4_0")
    assert TYPE_NAMES[p["blk.0.attn_q.weight"].dst_type] == "F16" and p["blk.0.attn_q.weight"].fallback


def test_parse_types():
    assert parse_ftype("q4_k_m").name == "Q4_K_M" and parse_ftype("Q4_K").name == "Q4_K_M"
    assert parse_ggml_type("q8_0") == 8
    assert set(SEED_TYPES) <= set(FTYPES)
    from ggrun.errors import BadArgumentError

    with pytest.raises(BadArgumentError):
        parse_ftype("Q9_K")
    with pytest.raises(BadArgumentError):
        parse_ggml_type("q9")


# --------------------------------------------------------------------------------------
# Real files: byte for byte against llama-quantize
# --------------------------------------------------------------------------------------

def _sha(p) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 24), b""):
            h.update(b)
    return h.hexdigest()


@pytest.mark.parametrize("key", ["Q8_0", "Q4_0"])
def test_quantize_file_equals_llama_quantize_bytes(smollm2_path, tmp_path, key):
    """Metadata, layout and blocks: the whole file equals what llama-quantize wrote."""
    entry = SMOL["mixes"][key]
    out = tmp_path / f"{key}.gguf"
    r = quantize_file(smollm2_path, str(out), key, allow_requantize=True)
    assert r.file_size == entry["file_size"]
    assert _sha(out) == entry["sha256"]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.skipif(not os.environ.get("GGRUN_SLOW_TESTS"), reason="slow (k-quant search on the CPU): set GGRUN_SLOW_TESTS=1")
@pytest.mark.parametrize("key", [k for k in SMOL["mixes"] if k not in ("Q8_0", "Q4_0")])
def test_every_mix_equals_llama_quantize_bytes(smollm2_path, tmp_path, key):
    entry = SMOL["mixes"][key]
    out = tmp_path / f"{key}.gguf"
    quantize_file(smollm2_path, str(out), entry["type"], allow_requantize=True, **_plan_args(entry))
    assert _sha(out) == entry["sha256"]


def test_metadata_copied_and_file_type_set(smollm2_path, tmp_path):
    out = tmp_path / "q8.gguf"
    quantize_file(smollm2_path, str(out), "Q8_0", allow_requantize=True)
    a, b = GGUFFile(smollm2_path), GGUFFile(out)
    assert b.metadata["general.file_type"] == 7 and b.metadata["general.quantization_version"] == 2
    for k, v in a.metadata.items():
        if k != "general.file_type":
            assert b.metadata[k] == v, k
    assert list(b.metadata)[-2:] == ["general.quantization_version", "general.file_type"]
    assert b.alignment == a.alignment


# --------------------------------------------------------------------------------------
# CLI and bad input: one line, exit 2, nothing left behind
# --------------------------------------------------------------------------------------

def _ggrun(*args):
    return subprocess.run([sys.executable, "-m", "ggrun", *map(str, args)], capture_output=True, text=True)


def test_cli_unknown_type(smollm2_path, tmp_path):
    r = _ggrun("quantize", smollm2_path, tmp_path / "o.gguf", "Q9_9")
    assert r.returncode == 2 and "unknown quantization type 'Q9_9'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_cli_requantize_needs_flag(smollm2_path, tmp_path):
    r = _ggrun("quantize", smollm2_path, tmp_path / "o.gguf", "Q4_K_M")
    assert r.returncode == 2 and "--allow-requantize" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_cli_shape_cant_take_type(smollm2_path, tmp_path):
    r = _ggrun("quantize", "--allow-requantize", "--token-embedding-type", "q6_k", smollm2_path, tmp_path / "o.gguf", "Q8_0")
    assert r.returncode == 2 and "token_embd.weight" in r.stderr and "Q6_K" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_cli_missing_input(tmp_path):
    r = _ggrun("quantize", tmp_path / "nope.gguf", tmp_path / "o.gguf", "Q8_0")
    assert r.returncode == 2 and "nope.gguf" in r.stderr and not list(tmp_path.iterdir())


def test_cli_dry_run(smollm2_path, tmp_path):
    r = _ggrun("quantize", "--dry-run", smollm2_path, tmp_path / "o.gguf", "Q4_K_M")
    assert r.returncode == 0, r.stderr
    assert "180 of 272 tensor(s) required fallback" in r.stdout and "quant size  =    98.87 MiB" in r.stdout
    assert not list(tmp_path.iterdir())


def test_disk_full_leaves_nothing(smollm2_path, tmp_path, monkeypatch):
    import errno

    from ggrun.errors import GGRunError

    import ggrun.gguf_write as q

    calls = {"n": 0}
    real = q._write

    def full(fd, a):
        calls["n"] += 1
        if calls["n"] > 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, a)

    monkeypatch.setattr(q, "_write", full)
    out = tmp_path / "o.gguf"
    with pytest.raises(GGRunError, match="no space left"):
        quantize_file(smollm2_path, str(out), "Q8_0", allow_requantize=True)
    assert not list(tmp_path.iterdir())


def test_failure_while_computing_leaves_nothing(smollm2_path, tmp_path, monkeypatch):
    import ggrun.quantize as q

    calls = {"n": 0}
    real = q.quantize_tensor

    def boom(x, t):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("codec exploded")
        return real(x, t)

    monkeypatch.setattr(q, "quantize_tensor", boom)
    with pytest.raises(RuntimeError, match="codec exploded"):
        quantize_file(smollm2_path, str(tmp_path / "o.gguf"), "Q8_0", allow_requantize=True)
    assert not list(tmp_path.iterdir())
