"""-ctk/-ctv q8_0 (and f32) on the CUDA backend: the q8_0 cache in the decode kernel
(``decode_attention_kv``, GraphSteps) and dequantized for prefill's SDPA, against the CPU's
q8_0 numerics and the GPU's own f16 path. On the CPU through Triton's interpreter."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and there is no GPU", allow_module_level=True)

DEV = "cuda" if os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
COMBOS = [("q8_0", "q8_0"), ("q8_0", "f16"), ("f16", "q8_0"), ("f32", "f32")]


def same_rows(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Cache rows written by the kernel vs the CPU path's: bit-identical under the interpreter
    (IEEE numpy); on a GPU an f32 row may differ in the last bit (the RoPE products are
    contracted into FMAs there), which the f16 and q8_0 roundings absorb."""
    got = got.cpu()
    if DEV == "cpu" or got.dtype != torch.float32:
        return torch.equal(got, want)
    return bool(((got - want).abs() <= 1e-6 * want.abs().amax()).all())   # (FMA: ulps of the products)


def rel(a, b):
    return ((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm()).item()


def cpu_step(q, k, v, cos, sin, pos, kr_c, vr_c, rk, rv, H, Hkv, hd):
    """The CPU path of one decode step (model.py's unfused ops, then the C attention): RoPE,
    the quantized caches' rotation, the new row stored into kr_c / vr_c at pos (in place),
    attention over 0..pos, the output rotated back → [1, H, hd]."""
    from ggrun.backends.cpu import CPUBackend
    from ggrun.kv_types import fwht, to_storage
    from ggrun.model import apply_rope

    c, s = cos[pos:pos + 1], sin[pos:pos + 1]
    qr = apply_rope(q.view(1, H, hd), c, s, hd, False)
    kr = apply_rope(k.view(1, Hkv, hd), c, s, hd, False)
    vr = v.view(1, Hkv, hd)
    if rk:
        qr, kr = fwht(qr, rk), fwht(kr, rk)
    if rv:
        vr = fwht(vr, rv)
    kr_c[pos:pos + 1], vr_c[pos:pos + 1] = to_storage(kr, kr_c), to_storage(vr, vr_c)
    ref = CPUBackend(1).attention(qr, kr_c[:pos + 1], vr_c[:pos + 1], pos, 0.125)
    return fwht(ref, rv) if rv else ref


def tolerance(type_k: str, type_v: str) -> float:
    """Kernel output vs CPU attention: f32 summation order, or the CPU's f16 V accumulator."""
    return 2e-3 if "f16" in (type_k, type_v) or type_k == "f32" else 1e-5


@pytest.mark.parametrize("type_k,type_v", COMBOS)
def test_decode_kernel_matches_cpu_attention(type_k, type_v):
    """One decode step of the kernel: the row it writes is the CPU path's (rotation, then ggml's
    quantizer) bit for bit, and its output is the CPU attention's within f32 summation order
    (1e-3 where the CPU accumulates an f16 V in f16)."""
    from ggrun.kernels.attention import decode_attention_kv
    from ggrun.kv_types import rotation_sizes, storage, to_storage

    g = torch.Generator().manual_seed(3)
    H, Hkv, hd, pos, n_ctx = 4, 2, 64, 37, 48
    cos, sin = torch.rand(n_ctx, hd // 2, generator=g), torch.rand(n_ctx, hd // 2, generator=g)
    rk, rv = rotation_sizes(type_k, type_v, hd)
    q, k, v = (torch.randn(n * hd, generator=g) for n in (H, Hkv, Hkv))

    def cache(t):
        r, dt = storage(t, hd)
        c = torch.zeros(n_ctx, Hkv, r, dtype=dt)
        c[:pos] = to_storage(torch.randn(pos, Hkv, hd, generator=g), c)
        return c

    kc, vc = cache(type_k), cache(type_v)
    kr_c, vr_c = kc.clone(), vc.clone()
    out = torch.empty(H * hd)
    dev = torch.device(DEV)
    kd, vd = kc.to(dev), vc.to(dev)
    o = decode_attention_kv(q.to(dev), k.to(dev), v.to(dev), cos.to(dev), sin.to(dev), torch.tensor([pos], device=dev),
                            kd.transpose(0, 1), vd.transpose(0, 1), 0.125, out=out.to(dev), block_t=16, rot=(rk, rv))
    ref = cpu_step(q, k, v, cos, sin, pos, kr_c, vr_c, rk, rv, H, Hkv, hd)
    assert same_rows(kd[pos], kr_c[pos]) and same_rows(vd[pos], vr_c[pos])
    assert rel(o, ref.flatten()) < tolerance(type_k, type_v)


@pytest.mark.parametrize("type_k,type_v", [("q8_0", "q8_0"), ("f16", "q8_0"), ("f32", "f32")])
def test_decode_kernel_splits(type_k, type_v):
    """The split (flash-decoding) kernel: 4 splits of 16 positions, decode steps at pos 0 and at
    and around the split boundaries; each written row bit for bit the CPU path's, each output the
    CPU attention's (the Hadamard rotation of V undone after the splits are merged)."""
    from ggrun.kernels.attention import _plan, decode_attention_kv
    from ggrun.kv_types import rotation_sizes, storage, to_storage

    g = torch.Generator().manual_seed(5)
    H, Hkv, hd, n_ctx = 4, 2, 64, 64
    assert _plan(n_ctx, 8, 16) == (16, 4)
    cos, sin = torch.rand(n_ctx, hd // 2, generator=g), torch.rand(n_ctx, hd // 2, generator=g)
    rk, rv = rotation_sizes(type_k, type_v, hd)

    def cache(t):
        r, dt = storage(t, hd)
        c = torch.zeros(n_ctx, Hkv, r, dtype=dt)
        c[:] = to_storage(torch.randn(n_ctx, Hkv, hd, generator=g), c)
        return c

    kr_c, vr_c = cache(type_k), cache(type_v)
    dev = torch.device(DEV)
    kd, vd = kr_c.to(dev), vr_c.to(dev)
    out = torch.empty(H * hd, device=dev)
    for pos in (0, 15, 16, 17, 32, 33, 48, 63):
        q, k, v = (torch.randn(n * hd, generator=g) for n in (H, Hkv, Hkv))
        o = decode_attention_kv(q.to(dev), k.to(dev), v.to(dev), cos.to(dev), sin.to(dev),
                                torch.tensor([pos], device=dev), kd.transpose(0, 1), vd.transpose(0, 1), 0.125,
                                out=out, block_t=8, rot=(rk, rv), split_t=16)
        ref = cpu_step(q, k, v, cos, sin, pos, kr_c, vr_c, rk, rv, H, Hkv, hd)
        assert same_rows(kd, kr_c) and same_rows(vd, vr_c), pos
        assert rel(o, ref.flatten()) < tolerance(type_k, type_v), pos


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny llama GGUF with 64-wide heads (q8_0 blocks and the 64-wide rotation apply),
    as the CUDA and the CPU backends run it."""
    from tiny_model import write_tiny_llama

    from ggrun.backends.cpu import CPUBackend
    from ggrun.backends.cuda import CUDABackend
    from ggrun.config import ModelConfig
    from ggrun.gguf_file import GGUFFile
    from ggrun.model import LlamaModel
    from ggrun.weights import LlamaWeights

    path = tmp_path_factory.mktemp("tiny") / "tiny64.gguf"
    write_tiny_llama(path, n_layer=2, n_embd=256, n_head=4, n_head_kv=2, n_ff=256, wtype="Q8_0", seed=7)
    f = GGUFFile(str(path))
    cfg = ModelConfig.from_gguf(f)
    assert cfg.head_dim == 64
    gpu = LlamaModel(cfg, LlamaWeights.from_gguf(f, cfg.n_layer), CUDABackend(DEV), max_pos=32)
    cpu = LlamaModel(cfg, LlamaWeights.from_gguf(f, cfg.n_layer), CPUBackend(1), max_pos=32)
    return cfg, gpu, cpu


PROMPT = [3, 17, 5, 9, 1, 2, 33, 8, 11, 40, 12]
NEXT = [4, 19, 7]


def _run(lm, cfg, type_k, type_v, steps=None, device="cpu"):
    """Prefill PROMPT, then decode NEXT one token at a time (through ``steps``, GraphSteps, when
    given) → ([logits of each step], cache)."""
    from ggrun.model import KVCache, SeqChunk

    cache = KVCache(cfg, 24, device=device, type_k=type_k, type_v=type_v)
    out = [lm.forward(torch.tensor(PROMPT), [SeqChunk(0, 0, len(PROMPT))], cache)]
    lm.fast_decode = steps
    try:
        for i, t in enumerate(NEXT):
            out.append(lm.forward(torch.tensor([t]), [SeqChunk(0, len(PROMPT) + i, 1)], cache))
    finally:
        lm.fast_decode = None
    return [o.float().cpu() for o in out], cache


@pytest.mark.parametrize("type_k,type_v", [("q8_0", "q8_0"), ("q8_0", "f16")])
def test_gpu_q8_0_cache_agrees_with_its_f16_path_and_the_cpu(tiny, type_k, type_v):
    """Prefill (SDPA on the dequantized cache) and one-token steps through GraphSteps (the q8_0
    decode kernel) with a q8_0 cache: close to the eager GPU q8_0 forward, within quantization
    tolerance of the GPU's f16 cache, and close to the CPU backend's q8_0 run (llama.cpp's numerics)."""
    from ggrun.backends.cuda_decode import GraphSteps

    cfg, gpu, cpu = tiny
    graph, gcache = _run(gpu, cfg, type_k, type_v, GraphSteps(cfg, gpu.w, DEV), device=DEV)
    eager, ecache = _run(gpu, cfg, type_k, type_v, device=DEV)
    f16, _ = _run(gpu, cfg, "f16", "f16", device=DEV)
    on_cpu, ccache = _run(cpu, cfg, type_k, type_v)
    n = len(PROMPT) + len(NEXT)
    assert gcache.k.dtype == torch.uint8 and gcache.k.shape[-1] == 2 * 34
    # this random model's floor: the graph and eager routes differ by ~1.5e-2 with an f16 cache
    # too (fused RMSNorm+quantize, ...), the GPU and CPU backends by ~2e-2
    for a, b, c, d in zip(graph, eager, f16, on_cpu):
        assert rel(a, b) < 3e-2 and a.argmax() == b.argmax()           # kernel vs eager (GPU)
        assert rel(b, c) < 5e-2                                         # q8_0 vs f16 cache
        assert rel(a, d) < 4e-2                                         # GPU vs CPU, both q8_0
    from ggrun.kv_types import to_float

    for t in ("k", "v"):
        g_, e_, c_ = (to_float(getattr(x, t)[:, 0, :n].cpu()) for x in (gcache, ecache, ccache))
        assert rel(g_, e_) < 2e-2 and rel(e_, c_) < 2e-2


def test_prefill_chunks_and_f32_cache(tiny):
    """Prefill in two chunks (the second attends to the dequantized cache with a mask) equals
    one pass; an f32 cache attends as f16 (llama.cpp's cast), so it matches the f16 cache."""
    from ggrun.model import KVCache, SeqChunk

    cfg, gpu, _ = tiny
    toks = torch.tensor(PROMPT + NEXT)
    a = KVCache(cfg, 24, device=DEV, type_k="q8_0", type_v="q8_0")
    b = KVCache(cfg, 24, device=DEV, type_k="q8_0", type_v="q8_0")
    one = gpu.forward(toks, [SeqChunk(0, 0, len(toks))], a)
    gpu.forward(toks[:9], [SeqChunk(0, 0, 9)], b)
    two = gpu.forward(toks[9:], [SeqChunk(0, 9, len(toks) - 9)], b)
    assert rel(two, one) < 2e-2 and two.argmax() == one.argmax()
    f32, _ = _run(gpu, cfg, "f32", "f32", device=DEV)
    f16, _ = _run(gpu, cfg, "f16", "f16", device=DEV)
    for x, y in zip(f32, f16):
        assert rel(x, y) < 1e-3
