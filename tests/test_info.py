"""ggrun info: the file's description, the memory estimate against llama.cpp's, --quant-types."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ggrun.gguf_file import GGUFFile
from ggrun.info import estimate_memory, print_info, print_quant_types

MiB = 2**20


def test_print_info_smollm2(smollm2_path, capsys):
    assert print_info(smollm2_path, n_ctx=4096) == 0
    out = capsys.readouterr().out
    for s in ("architecture:  llama", "file type:     Q4_1", "134.52 M", "gpt2 (pre: smollm), 49152 tokens",
              "chat template: yes", "Q4_1    210 tensors", "Q8_0      1 tensors", "bits per weight: 5.74",
              "Max RAM required: 0.37 GB"):
        assert s in out, s


def test_memory_estimate_matches_llama_cpp_cpu(smollm2_path):
    """llama.cpp (CPU, -c 4096) reserves: model 92.10 MiB, KV 90.00 MiB, compute 106.77 MiB."""
    m = estimate_memory(GGUFFile(smollm2_path), 4096, 0)
    assert abs(m.weights_cpu / MiB - 92.10) < 0.01
    assert m.kv_cpu == 90 * MiB and m.kv_gpu == 0 and m.vram == 0
    assert abs(m.compute_cpu / MiB / 106.77 - 1) < 0.10


@pytest.mark.parametrize("n_ctx,kv_mib,compute_mib", [(4096, 2048, 108.52), (16384, 8192, 127.02)])
def test_memory_estimate_deepseek_67b(tmp_path, vocab_dir, n_ctx, kv_mib, compute_mib):
    """llama.cpp's figures on the 6.7B Q4_K_M shape (CPU build, measured with llama-completion -v)."""
    from ggrun.synth import synth

    p = tmp_path / "ds.gguf"
    synth("deepseek-coder-6.7b", str(p), "Q4_K_M", vocab=str(vocab_dir / "ggml-vocab-deepseek-coder.gguf"), sparse=True)
    f = GGUFFile(p)
    m = estimate_memory(f, n_ctx, 0)
    assert m.kv_cpu == kv_mib * MiB
    assert abs(m.compute_cpu / MiB / compute_mib - 1) < 0.10
    g = estimate_memory(f, n_ctx, -1)                      # everything on the GPU
    assert g.kv_gpu == kv_mib * MiB and g.kv_cpu == 0
    assert g.weights_cpu == f.tensors["token_embd.weight"].n_bytes
    assert g.weights_gpu + g.weights_cpu == sum(t.n_bytes for t in f.tensors.values())
    half = estimate_memory(f, n_ctx, 17)                   # the output layer and the last 16 of 32 layers
    assert half.kv_gpu == half.kv_cpu == kv_mib * MiB // 2
    assert f.tensors["output.weight"].n_bytes < half.weights_gpu
    assert f.tensors["token_embd.weight"].n_bytes < half.weights_cpu
    one = estimate_memory(f, n_ctx, 1)                     # -ngl 1: the output layer only (llama.cpp)
    assert one.weights_gpu == f.tensors["output.weight"].n_bytes + f.tensors["output_norm.weight"].n_bytes
    assert one.kv_gpu == 0


def test_quant_types(capsys):
    assert print_quant_types() == 0
    out = capsys.readouterr().out
    for s in ("Q4_K   4.5000", "Q6_K   6.5625", "Q2_K   2.6250", "Q8_0   8.5000", "Q4_K_M  medium",
              "'more bits' layers", "falls back"):
        assert s in out, s


def test_cli_info(smollm2_path):
    r = subprocess.run([sys.executable, "-m", "ggrun", "info", smollm2_path], capture_output=True, text=True)
    assert r.returncode == 0 and "Max RAM required" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ggrun", "info", "/nonexistent.gguf"], capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr
