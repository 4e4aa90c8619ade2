"""-ctk/-ctv (KV cache types) on the CPU: q8_0 and f32 caches reproduce llama.cpp.

Golden: tests/data/golden/smollm2_q4_1_kv_cache_types.json (+ _last_logits.npy), made by
``scripts/make_golden.py --kv-cache-types`` from llama.cpp's library (flash attention on,
-ctk/-ctv q8_0 q8_0, q8_0 f16 and f16 q8_0, 3 prompts × 32 greedy tokens). On the CPU family the
goldens come from (AVX-512), ggrun's logits are llama.cpp's bit for bit, at every step.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_golden_generation import _same_cpu_family_as_golden

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.fixture(scope="module")
def kv_golden():
    g = json.loads((GOLDEN / "smollm2_q4_1_kv_cache_types.json").read_text())
    return g, np.load(GOLDEN / g["last_logits"]["file"])


@pytest.fixture(scope="module")
def lib():
    from ggrun.backends import cpu_ops

    lib = cpu_ops.load()
    if lib is None:
        pytest.skip("the C ops did not build here")
    return lib


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# --- building blocks ---------------------------------------------------------------------

def test_q8_0_quantizer_torch_equals_c(lib):
    """kv_types.quantize_q8_0 (torch, any device) and the C quantizer are ggml's quantize_row_q8_0
    bit for bit, ties (amax = 127 → id = 1, x = k + 0.5) rounding half to even."""
    from ggrun.kv_types import dequantize_q8_0, quantize_q8_0

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(7, 3, 64, generator=g) * s for s in (1e-4, 1.0, 300.0)]
    tie = torch.zeros(1, 32)
    tie[0, 0], tie[0, 1:6] = 127.0, torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5])
    xs += [tie, torch.zeros(2, 32), torch.randn(1, 32, generator=g)]
    for x in xs:
        t = quantize_q8_0(x)
        c = torch.empty_like(t)
        lib.ggrun_quantize_row_q8_0(x.contiguous().data_ptr(), c.data_ptr(), x.numel())
        assert torch.equal(t, c)
    q = quantize_q8_0(tie)[0, 3:8].view(torch.int8).tolist()            # quants 1..5 (bytes 0, 1: d)
    assert q == [0, 2, 2, 0, -2]                                      # half to even
    x = xs[1]
    err = (dequantize_q8_0(quantize_q8_0(x)) - x).abs()
    assert float(err.max()) <= float(x.abs().max()) / 127 * 0.5 * 1.01


def test_fwht_torch_equals_c_and_is_the_hadamard_matrix(lib):
    """The attention rotation: torch and C compute the same bits (ggml's fwht order), equal the
    orthonormal Hadamard matrix product, and undo themselves."""
    from ggrun.kv_types import fwht, rotation_sizes

    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 128, generator=g)
    for n in (64, 128):
        c = x.clone()
        lib.ggrun_fwht(c.data_ptr(), c.numel(), n)
        t = fwht(x, n)
        assert torch.equal(t, c)
        h = torch.ones(1, 1, dtype=torch.float64)
        while h.shape[0] < n:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        ref = (x.double().reshape(-1, n) @ (h / n ** 0.5)).reshape(x.shape)
        assert _rel(t, ref) < 1e-6
        assert _rel(fwht(t, n), x) < 1e-6
    assert rotation_sizes("q8_0", "q8_0", 64) == (64, 64)
    assert rotation_sizes("q8_0", "f16", 128) == (128, 0)
    assert rotation_sizes("f16", "q8_0", 128) == (0, 64)
    assert rotation_sizes("q8_0", "q8_0", 96) == (0, 0)             # head_dim % 64 != 0: none
    assert rotation_sizes("f16", "f32", 64) == (0, 0)


def test_cache_type_names_and_storage():
    from ggrun.errors import BadArgumentError
    from ggrun.kv_types import api_cache_type, parse_cache_type

    assert parse_cache_type("Q8_0") == "q8_0" and parse_cache_type(None) == "f16"
    assert api_cache_type(8) == "q8_0" and api_cache_type(1) == "f16" and api_cache_type(0) == "f32"
    for bad in ("q4_0", "bf16", "int8"):
        with pytest.raises(BadArgumentError, match=bad):
            parse_cache_type(bad)
    with pytest.raises(BadArgumentError, match="type_k=2"):
        api_cache_type(2, "type_k")


# --- llama.cpp's goldens ------------------------------------------------------------------

def _engine(smollm2_path, type_k, type_v):
    from ggrun.loader import load

    return load(smollm2_path, n_ctx=512, n_threads=2, cache_type_k=type_k, cache_type_v=type_v)


@pytest.mark.parametrize("run", [0, 1, 2], ids=["q8_0-q8_0", "q8_0-f16", "f16-q8_0"])
def test_q8_0_cache_matches_llama_cpp(smollm2_path, kv_golden, run):
    """Per prompt: the logits of the prompt and of every one of the 32 steps after it (top-5 ids
    and values) and the greedy tokens equal llama.cpp's with the same -ctk/-ctv."""
    g, last = kv_golden
    r = g["runs"][run]
    eng = _engine(smollm2_path, r["type_k"], r["type_v"])
    exact = _same_cpu_family_as_golden()
    assert (eng.cache.type_k, eng.cache.type_v) == (r["type_k"], r["type_v"])
    for i, p in enumerate(r["prompts"]):
        eng.reset()
        lg = eng.eval(p["prompt_ids"])
        ref = torch.from_numpy(last[run, i])
        assert int(lg.argmax()) == int(ref.argmax())
        if exact:
            assert torch.equal(lg, ref), _rel(lg, ref)
        else:
            assert _rel(lg, ref) < 0.05
        eog = p["first_eog_index"]
        n = len(p["generated_ids"]) if eog < 0 else eog + 1
        got = []
        for step in range(n):
            want = p["top5"][step]                                    # [[id, logit %.9g], ...]
            got.append(int(lg.argmax()))
            if exact:
                assert [float(lg[t]) for t, _ in want] == [float(np.float32(v)) for _, v in want], (i, step)
                assert float(torch.topk(lg, 5).values[-1]) == float(np.float32(want[-1][1]))
            if step + 1 < n:
                lg = eng.eval([got[-1]])
        assert got == p["generated_ids"][:n], i


def test_q8_0_generate_and_batched_path_match_llama_cpp(smollm2_path, kv_golden):
    """Engine.generate's tokens, and the unfused path (two sequences in one forward step: the
    torch quantizer and rotation, then the C attention) gives llama.cpp's prompt logits too."""
    from ggrun.sampling import SamplingParams

    g, last = kv_golden
    r = g["runs"][0]
    from ggrun.loader import load

    eng = load(smollm2_path, n_ctx=512, n_threads=2, n_seq=2, cache_type_k="q8_0", cache_type_v="q8_0")
    p = r["prompts"][2]
    got = [ev.token for ev in eng.generate(p["prompt_ids"], SamplingParams(temperature=0), max_tokens=32)
           if ev.token is not None]
    eog = p["first_eog_index"]
    assert got == (p["generated_ids"] if eog < 0 else p["generated_ids"][:eog])
    eng.reset(0)
    out = eng.eval_batch({0: r["prompts"][0]["prompt_ids"], 1: r["prompts"][2]["prompt_ids"]})
    for slot, i in ((0, 0), (1, 2)):
        ref = torch.from_numpy(last[0, i])
        if _same_cpu_family_as_golden():
            assert torch.equal(out[slot], ref), _rel(out[slot], ref)
        else:
            assert _rel(out[slot], ref) < 0.05


def test_f32_cache_is_llama_cpps_f16_numerics(smollm2_path):
    """llama.cpp casts an f32 K/V cache to f16 before its flash attention: -ctk f32 -ctv f32 gives
    the f16 goldens (checked against llama.cpp when the goldens were made); twice the memory."""
    golden = json.loads((GOLDEN / "smollm2_q4_1_greedy.json").read_text())
    logits = np.load(GOLDEN / "smollm2_q4_1_last_logits.npy")
    eng = _engine(smollm2_path, "f32", "f32")
    assert eng.cache.k.dtype == torch.float32
    assert eng.cache.n_bytes == 2 * _engine(smollm2_path, "f16", "f16").cache.n_bytes
    from ggrun.sampling import SamplingParams

    for i in (0, 3):                                                  # one_chunk and tiled prompts
        p = golden["prompts"][i]
        eng.reset()
        lg = eng.eval(p["prompt_ids"])
        ref = torch.from_numpy(logits[i])
        assert torch.equal(lg, ref) if _same_cpu_family_as_golden() else _rel(lg, ref) < 0.05
        eng.reset()
        got = [ev.token for ev in eng.generate(p["prompt_ids"], SamplingParams(temperature=0), max_tokens=24)
               if ev.token is not None]
        assert got == p["generated_ids"][:24]


# --- memory, API, CLI --------------------------------------------------------------------

def test_memory_estimate_and_allocation(smollm2_path):
    from ggrun.config import ModelConfig
    from ggrun.gguf_file import GGUFFile
    from ggrun.info import estimate_memory
    from ggrun.model import KVCache

    f = GGUFFile(smollm2_path)
    cfg = ModelConfig.from_gguf(f)
    n_ctx = 2048
    f16 = estimate_memory(f, n_ctx, 0).kv_cpu
    q8 = estimate_memory(f, n_ctx, 0, "q8_0", "q8_0").kv_cpu
    mixed = estimate_memory(f, n_ctx, 0, "q8_0", "f16").kv_cpu
    assert f16 == 2 * cfg.n_layer * n_ctx * cfg.kv_dim * 2
    assert q8 == cfg.n_layer * n_ctx * cfg.kv_dim * 2 * 34 // 32      # 34 bytes per 32 values
    assert q8 == 25067520                     # llama.cpp: "K (q8_0): 11.95 MiB, V (q8_0): 11.95 MiB"
    assert mixed == (q8 + f16) // 2
    c = KVCache(cfg, 64, type_k="q8_0", type_v="q8_0")
    assert c.k.dtype == torch.uint8 and c.k.shape[-1] == cfg.head_dim // 32 * 34
    assert c.n_bytes == cfg.kv_cache_bytes(64, 1, "q8_0", "q8_0")


def test_llama_api_type_k_type_v(tiny_path):
    from ggrun.api.llama import Llama
    from ggrun.errors import BadArgumentError

    with pytest.raises(BadArgumentError, match="type_v=2"):
        Llama(tiny_path, type_v=2, verbose=False)                     # GGML_TYPE_Q4_0: not supported
    llm = Llama(tiny_path, type_k=0, type_v="f32", verbose=False)    # GGML_TYPE_F32
    assert (llm._eng.cache.type_k, llm._eng.cache.type_v) == ("f32", "f32")
    with pytest.raises(BadArgumentError, match="multiple of 32"):     # the tiny model's head is 16 wide
        Llama(tiny_path, type_k=8, verbose=False)


def test_cli_run_with_q8_0_cache(smollm2_path, capsys):
    from ggrun.cli import main

    rc = main(["run", "-m", smollm2_path, "-p", "The capital of France is", "-n", "4", "--temp", "0",
               "-ctk", "q8_0", "-ctv", "q8_0", "-c", "256", "--no-display-prompt"])
    assert rc == 0
    assert capsys.readouterr().out.strip()


# --- state files and context shift --------------------------------------------------------

def test_state_file_keeps_the_q8_0_cache(smollm2_path, tmp_path):
    """A q8_0 cache is saved as it is stored (ggml blocks) and restored bit for bit; a run with
    other cache types refuses the file in one line, as llama.cpp's state loading does."""
    from ggrun.loader import load
    from ggrun.prompt_cache import PromptCacheError, load_state, read_header, save_state

    a = load(smollm2_path, n_ctx=128, n_seq=2, cache_type_k="q8_0", cache_type_v="q8_0")
    ids = a.tokenizer.encode("The quick brown fox jumps over the lazy dog", add_bos=None)
    a.eval(ids, 0)
    p = tmp_path / "s.bin"
    assert save_state(a, str(p), slot=0) == len(ids)
    header, _ = read_header(str(p))
    assert (header["type_k"], header["type_v"], header["n_rot_k"]) == ("q8_0", "q8_0", 64)
    a.reset(1)
    load_state(a, str(p), slot=1)
    n = len(ids)
    for t in (a.cache.k, a.cache.v):
        assert torch.equal(t[:, 1, :n], t[:, 0, :n])
    assert torch.equal(a.eval([11], 1), a.eval([11], 0))
    b = load(smollm2_path, n_ctx=128)
    with pytest.raises(PromptCacheError, match="-ctk q8_0 -ctv q8_0 KV cache, this run's is -ctk f16 -ctv f16"):
        load_state(b, str(p))


def test_context_shift_on_a_q8_0_cache(smollm2_path):
    """shift_context re-rotates a q8_0 K as llama.cpp: dequantize, undo the Hadamard rotation,
    RoPE by -n_discard, rotate, quantize. Layer 0's K then matches a fresh evaluation of the
    shortened sequence up to one more round of q8_0 rounding."""
    from ggrun.kv_types import to_float
    from ggrun.loader import load
    from ggrun.prompt_cache import shift_context

    e = load(smollm2_path, n_ctx=64, n_seq=2, cache_type_k="q8_0", cache_type_v="q8_0")
    ids = list(range(1000, 1020))
    e.eval(ids, 0)
    shift_context(e, 0, n_keep=4, n_discard=6)
    kept = ids[:4] + ids[10:]
    assert e.cache.tokens[0] == kept
    e.eval(kept, 1)
    n = len(kept)
    k0, k1 = to_float(e.cache.k[0, 0, :n]), to_float(e.cache.k[0, 1, :n])
    assert torch.equal(k0[:4], k1[:4])                                # the kept front is untouched
    assert _rel(k0, k1) < 2e-2
    assert torch.equal(e.cache.v[0, 0, :n], e.cache.v[0, 1, :n])
