"""The CUDA backend's routes as the engine meets them: one-token steps through CUDA graphs
(``GraphSteps``, the loader's ``fast_decode``) and prefill through the dequantize-ahead
pipeline, against the eager forward. On the CPU through Triton's interpreter."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and there is no GPU", allow_module_level=True)

DEV = "cuda" if os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A tiny llama GGUF (Q8_0, tied output)."""
    from tiny_model import write_tiny_llama

    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    write_tiny_llama(path, n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, wtype="Q8_0", seed=5)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_file):
    """The tiny GGUF read as the loader reads it, on the CUDA backend."""
    from ggrun.backends.cuda import CUDABackend
    from ggrun.config import ModelConfig
    from ggrun.gguf_file import GGUFFile
    from ggrun.model import LlamaModel
    from ggrun.weights import LlamaWeights

    f = GGUFFile(str(tiny_file))
    cfg = ModelConfig.from_gguf(f)
    w = LlamaWeights.from_gguf(f, cfg.n_layer)
    return cfg, w, LlamaModel(cfg, w, CUDABackend(DEV), max_pos=64)


def test_graph_steps_match_eager_decode(tiny):
    """Two slots, prompts prefilled eagerly, then one-token steps through GraphSteps: the
    logits and the KV cache they write agree with the eager forward's."""
    from ggrun.backends.cuda_decode import GraphSteps, graph_ready
    from ggrun.model import KVCache, SeqChunk

    cfg, w, lm = tiny
    assert graph_ready(cfg, w, torch.device(DEV))
    prompts = {0: [3, 17, 5, 9, 1, 2, 33, 8, 11], 1: [7, 7, 2]}
    nxt = {0: [4, 19], 1: [12, 30]}
    eager, fast = KVCache(cfg, 16, n_seq=2, device=DEV), KVCache(cfg, 16, n_seq=2, device=DEV)
    for c in (eager, fast):
        for s, p in prompts.items():
            lm.forward(torch.tensor(p), [SeqChunk(s, 0, len(p))], c)
    steps = GraphSteps(cfg, w, DEV)
    try:
        for i in range(2):
            for s, p in prompts.items():
                pos = len(p) + i
                t = torch.tensor([nxt[s][i]])
                ref = lm.forward(t, [SeqChunk(s, pos, 1)], eager)
                lm.fast_decode = steps
                got = lm.forward(t, [SeqChunk(s, pos, 1)], fast)
                lm.fast_decode = None
                assert got.shape == ref.shape == (1, cfg.n_vocab)
                assert rel(got, ref) < 2e-2 and got.argmax() == ref.argmax()
    finally:
        lm.fast_decode = None
    # two steps of one slot back to back, the first's logits not read before the second is asked
    # (its token and position go through pinned host memory on the GPU: the second waits its turn)
    n0 = len(prompts[0]) + 2
    lm.fast_decode = steps
    try:
        a = lm.forward(torch.tensor([5]), [SeqChunk(0, n0, 1)], fast)
        b = lm.forward(torch.tensor([6]), [SeqChunk(0, n0 + 1, 1)], fast)
    finally:
        lm.fast_decode = None
    ra = lm.forward(torch.tensor([5]), [SeqChunk(0, n0, 1)], eager)
    rb = lm.forward(torch.tensor([6]), [SeqChunk(0, n0 + 1, 1)], eager)
    assert rel(a, ra) < 2e-2 and rel(b, rb) < 2e-2 and not torch.equal(a, b)
    assert len(steps.decoders) == 2                       # one decoder per slot, reused
    for s, p in prompts.items():
        n = len(p) + 2 + (2 if s == 0 else 0)
        assert rel(fast.k[:, s, :n].float(), eager.k[:, s, :n].float()) < 1e-2
        assert rel(fast.v[:, s, :n].float(), eager.v[:, s, :n].float()) < 1e-2


@pytest.fixture
def graph_engine(tiny, tiny_file):
    """→ make(n_ctx): an Engine over the tiny model whose one-token steps go through GraphSteps
    (the loader's fast_decode), as a GPU load sets it up; the model is restored after the test."""
    from ggrun.backends.cuda_decode import GraphSteps
    from ggrun.engine import Engine
    from ggrun.gguf_file import GGUFFile
    from ggrun.tokenizer import Tokenizer

    cfg, w, lm = tiny
    tok = Tokenizer.from_gguf(GGUFFile(str(tiny_file)))
    lm.fast_decode = GraphSteps(cfg, w, DEV)
    try:
        yield lambda n_ctx: Engine(lm, tok, n_ctx=n_ctx)
    finally:
        lm.fast_decode = None


def test_engine_samples_from_host_logits(graph_engine):
    """The engine on the CUDA backend, one-token steps through GraphSteps: the logits come back on
    the host (where llama.cpp samples too), and a sampled generation with llama.cpp main's flags
    (--temp 0.7 --top-k 40 --top-p 0.95 --min-p 0.05 --repeat-penalty 1.1) runs and repeats by seed."""
    from ggrun.sampling import SamplingParams

    eng = graph_engine(32)
    assert eng.eval([3, 17, 5]).device.type == "cpu" and eng.eval([9]).device.type == "cpu"
    eng.reset()
    p = SamplingParams(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, seed=11)
    runs = []
    for _ in range(2):
        evs = list(eng.generate([3, 17, 5, 9], p, max_tokens=6, ignore_eos=True))
        runs.append([e.token for e in evs if e.token is not None])
        assert evs[-1].finish_reason == "length" and evs[-1].timings.gen_n == 5
    assert len(runs[0]) == 6 and runs[0] == runs[1]


def test_warm_up_leaves_no_trace(graph_engine):
    """llama.cpp's warm-up run (loader.warm_up: a two-token prompt and a step, GraphSteps' capture on
    the GPU) empties slot 0 again: the greedy tokens after it are those of an engine without one."""
    from ggrun.loader import warm_up
    from ggrun.sampling import SamplingParams

    runs = []
    for warm in (False, True):
        eng = graph_engine(32)
        if warm:
            warm_up(eng)
            assert eng.cache.tokens[0] == []
        evs = eng.generate([5, 9, 2], SamplingParams(temperature=0.0), max_tokens=8, ignore_eos=True)
        runs.append([e.token for e in evs if e.token is not None])
    assert len(runs[0]) == 8 and runs[0] == runs[1]


def test_prefill_in_chunks_matches_one_pass(tiny):
    """Prefill (M > 8 rows: dequantize → GEMM, causal attention) in one pass and in two
    chunks (the second attends to the cache with an explicit mask) agree."""
    from ggrun.model import KVCache, SeqChunk

    cfg, w, lm = tiny
    toks = torch.tensor([5, 1, 9, 22, 13, 2, 8, 31, 4, 6, 17, 3, 28, 11, 19, 7, 25, 10, 14, 2])
    a, b = KVCache(cfg, 32, device=DEV), KVCache(cfg, 32, device=DEV)
    one = lm.forward(toks, [SeqChunk(0, 0, 20)], a)
    lm.forward(toks[:10], [SeqChunk(0, 0, 10)], b)
    two = lm.forward(toks[10:], [SeqChunk(0, 10, 10)], b)
    assert rel(two, one) < 2e-2 and two.argmax() == one.argmax()


def test_padded_prefill_matches_eager(tiny):
    """GraphPrefill's route (the prompt padded to its bucket, causal attention) gives the eager
    forward's last logits and K/V for the prompt's positions; prompts that don't fit a bucket
    of the cache go back to the eager forward (None)."""
    from ggrun.backends.cuda_decode import GraphPrefill
    from ggrun.model import KVCache, SeqChunk

    cfg, w, lm = tiny
    toks = torch.tensor([5, 1, 9, 22, 13, 2, 8, 31, 4, 6, 17, 3, 28, 11, 19, 7, 25, 10, 14, 2, 30, 12, 9])
    n = toks.shape[0]
    pre = GraphPrefill(lm)
    assert pre.bucket(n) == 64 and pre.bucket(64) == 64 and pre.bucket(65) == 128
    a, b = KVCache(cfg, 64, device=DEV), KVCache(cfg, 64, device=DEV)
    ref = lm.forward(toks, [SeqChunk(0, 0, n)], a)
    lm.fast_prefill = pre
    try:
        got = lm.forward(toks, [SeqChunk(0, 0, n)], b)
    finally:
        lm.fast_prefill = None
    assert got.shape == ref.shape == (1, cfg.n_vocab)
    assert rel(got, ref) < 1e-2 and got.argmax() == ref.argmax()   # (other GEMM shapes: f16 rounding)
    assert rel(b.k[:, 0, :n].float(), a.k[:, 0, :n].float()) < 1e-2
    assert rel(b.v[:, 0, :n].float(), a.v[:, 0, :n].float()) < 1e-2
    small = KVCache(cfg, 32, device=DEV)                        # bucket 64 > n_ctx 32: eager
    assert pre(toks, 0, small) is None


def test_prefill_fused_ops_match_torch():
    """The prefill batch's fused RMSNorm and SwiGLU (f16 out) against torch's f32 ops."""
    from ggrun.kernels.prefill_ops import rms_norm_f16, swiglu_f16

    g = torch.Generator().manual_seed(7)
    x = torch.randn(12, 300, generator=g).to(DEV)
    w = (1 + 0.1 * torch.randn(300, generator=g)).to(DEV)
    ref = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w
    got = rms_norm_f16(x, w, 1e-6)
    assert got.dtype == torch.float16 and rel(got.float(), ref) < 1e-3
    a, b = torch.randn(12, 1500, generator=g).to(DEV), torch.randn(12, 1500, generator=g).to(DEV)
    got = swiglu_f16(a, b)
    assert got.dtype == torch.float16 and rel(got.float(), torch.nn.functional.silu(a) * b) < 1e-3
