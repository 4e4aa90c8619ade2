"""KV state files (--prompt-cache, /save, /load) and llama.cpp's context shift."""

import pytest
import torch

from ggrun.errors import GGRunError
from ggrun.loader import load
from ggrun.prompt_cache import (PromptCacheError, PromptCacheRun, load_state, read_header, save_state,
                                shift_context)
from ggrun.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def eng(tiny_deepseek):
    return load(tiny_deepseek, n_ctx=128, n_seq=2)


@pytest.fixture(scope="module")
def tiny_deepseek(tmp_path_factory, vocab_dir):
    from test_infill import write_tiny_deepseek

    return write_tiny_deepseek(tmp_path_factory.mktemp("pc") / "tiny-ds.gguf", vocab_dir / "ggml-vocab-deepseek-coder.gguf")


def _gen(e, ids, n=6, slot=0):
    toks, last = [], None
    for ev in e.generate(ids, GREEDY, max_tokens=n, slot=slot):
        if ev.token is not None:
            toks.append(ev.token)
        else:
            last = ev
    return toks, last.timings


def test_save_and_load_roundtrip_bit_exact(eng, tmp_path):
    ids = eng.tokenizer.encode("The quick brown fox jumps over", add_bos=None)
    eng.reset(0)
    eng.eval(ids, 0)
    k, v = eng.cache.k[:, 0, :len(ids)].clone(), eng.cache.v[:, 0, :len(ids)].clone()
    p = tmp_path / "s.bin"
    assert save_state(eng, str(p), slot=0, meta={"x": 1}) == len(ids)
    eng.reset(1)
    st = load_state(eng, str(p), slot=1)
    assert st.tokens == ids and st.meta == {"x": 1} and eng.cache.tokens[1] == ids
    assert torch.equal(eng.cache.k[:, 1, :len(ids)], k) and torch.equal(eng.cache.v[:, 1, :len(ids)], v)


def test_prompt_cache_run_reuses_the_prompt(eng, tmp_path):
    path = str(tmp_path / "prompt.cache")
    ids = eng.tokenizer.encode("def quick_sort(xs):\n    if len(xs) <= 1:", add_bos=None)
    logs = []
    eng.reset(0)
    pc = PromptCacheRun(eng, path, ids, log=logs.append)
    assert pc.load() == 0 and "will create" in logs[-1]
    first, t1 = _gen(eng, ids)
    assert t1.cached_n == 0
    assert pc.save(first) == len(ids)
    eng.reset(0)                                   # a new run: nothing in memory
    pc = PromptCacheRun(eng, path, ids, log=logs.append)
    assert pc.load() == len(ids) and "exact match" in logs[-1]
    again, t2 = _gen(eng, ids)
    assert again == first                          # same tokens from the restored state
    assert t2.cached_n == len(ids) - 1 and t2.prompt_n == 1   # only the last prompt token re-evaluated
    assert pc.save(again) == 0                     # nothing new: not rewritten
    longer = ids + eng.tokenizer.encode(" return xs", add_bos=False)
    eng.reset(0)
    pc = PromptCacheRun(eng, path, longer, log=logs.append)
    assert pc.load() == len(ids) and "matches" in logs[-1]
    _, t3 = _gen(eng, longer, n=2)
    assert t3.cached_n == len(ids)


def test_prompt_cache_all_and_read_only(eng, tmp_path):
    path = str(tmp_path / "all.cache")
    ids = eng.tokenizer.encode("hello there", add_bos=None)
    eng.reset(0)
    pc = PromptCacheRun(eng, path, ids, save_all=True, log=lambda m: None)
    pc.load()
    out, _ = _gen(eng, ids, n=4)
    n = pc.save(out)
    assert n == len(eng.cache.tokens[0]) and read_header(path)[0]["n_tokens"] == n
    before = open(path, "rb").read()
    other = eng.tokenizer.encode("something else entirely", add_bos=None)
    eng.reset(0)
    ro = PromptCacheRun(eng, path, other, read_only=True, log=lambda m: None)
    ro.load()
    _gen(eng, other, n=2)
    assert ro.save([]) == 0 and open(path, "rb").read() == before


def test_bad_files_fail_clearly(eng, tmp_path, vocab_dir):
    from test_infill import write_tiny_deepseek

    ids = eng.tokenizer.encode("abc", add_bos=None)
    eng.reset(0)
    eng.eval(ids, 0)
    good = tmp_path / "good.bin"
    save_state(eng, str(good))
    raw = good.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(raw[:-10])
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    for p, needle in [(cut, "truncated"), (junk, "not a ggrun"), (tmp_path / "none.bin", "no such file")]:
        with pytest.raises(PromptCacheError, match=needle) as e:
            load_state(eng, str(p))
        assert "\n" not in str(e.value)
    other = load(write_tiny_deepseek(tmp_path / "other.gguf", vocab_dir / "ggml-vocab-deepseek-coder.gguf", seed=7),
                 n_ctx=64)
    with pytest.raises(PromptCacheError, match="different model"):
        load_state(other, str(good))
    assert issubclass(PromptCacheError, GGRunError)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert PromptCacheRun(eng, str(empty), ids, log=lambda m: None).load() == 0


@pytest.mark.parametrize("scaling", [None, 4.0])
def test_context_shift_rerotates_k(tmp_path, vocab_dir, scaling):
    """After dropping positions [4, 10), layer 0's K of the kept tokens must equal a fresh
    evaluation of the shortened sequence (layer 0 sees only the token itself; f16 rounding apart)."""
    from test_infill import write_tiny_deepseek

    e = load(write_tiny_deepseek(tmp_path / "m.gguf", vocab_dir / "ggml-vocab-deepseek-coder.gguf",
                                 rope_scaling=scaling), n_ctx=64, n_seq=2)
    ids = list(range(100, 120))
    e.eval(ids, 0)
    shift_context(e, 0, n_keep=4, n_discard=6)
    kept = ids[:4] + ids[10:]
    assert e.cache.tokens[0] == kept
    e.eval(kept, 1)
    n = len(kept)
    k0, k1 = e.cache.k[0, 0, :n].float(), e.cache.k[0, 1, :n].float()
    assert torch.allclose(k0, k1, atol=2e-3, rtol=2e-3), (k0 - k1).abs().max()
    assert torch.equal(e.cache.v[0, 0, :n], e.cache.v[0, 1, :n])
    # a shift by 0 changes nothing; the slot keeps working
    _gen(e, kept + ids[:2], n=2)


def test_generate_with_shift_runs_past_the_context(eng):
    from ggrun.prompt_cache import generate_with_shift, keep_count

    prompt = list(range(200, 210))
    eng.reset(0)
    small = load(eng.path, n_ctx=48)
    toks, last = [], None
    for ev in generate_with_shift(small, prompt, GREEDY, max_tokens=80, n_keep=4, ignore_eos=True):
        if ev.token is not None:
            toks.append(ev.token)
        elif ev.finish_reason:
            last = ev
    assert len(toks) == 80 and last.finish_reason == "length"       # 90 tokens through a 48-token context
    held = small.cache.tokens[0]
    assert held[:5] == prompt[:5] and len(held) <= 48                 # --keep 4 (+ BOS) stayed in front
    assert keep_count(small.tokenizer, -1, 10) == 10 and keep_count(small.tokenizer, 4, 10) == 5
