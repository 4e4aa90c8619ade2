"""Tests of ggrun.cpu (C matmul kernels) against ggrun.cpu.reference (torch, same numerics),
a plain dequantize-then-matmul (sanity), and, when present, llama.cpp's own libggml-cpu."""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import ggrun.cpu as cpu
from ggrun.cpu import reference as ref

F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 30
ALL_TYPES = [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K]
NAMES = {F32: "F32", F16: "F16", BF16: "BF16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1", Q8_0: "Q8_0",
         Q2_K: "Q2_K", Q3_K: "Q3_K", Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K"}
F16_FIELDS = {Q4_0: [0], Q4_1: [0, 2], Q5_0: [0], Q5_1: [0, 2], Q8_0: [0], Q2_K: [80, 82], Q3_K: [108],
              Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208]}


def rand_weights(t: int, n: int, k: int, rng) -> np.ndarray:
    """Random valid raw blocks: random quant bytes, finite moderate fp16 scales."""
    if t == F32:
        return rng.standard_normal((n, k)).astype(np.float32).view(np.uint8)
    if t == F16:
        return rng.standard_normal((n, k)).astype(np.float16).view(np.uint8)
    if t == BF16:
        return torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32)).to(torch.bfloat16).view(torch.uint8).numpy()
    blck, bb = cpu.TYPE_SIZES[t]
    nb = k // blck
    w = rng.integers(0, 256, size=(n, nb, bb), dtype=np.uint8)
    for off in F16_FIELDS[t]:
        v = (rng.uniform(0.002, 0.02, size=(n, nb)) * rng.choice([-1, 1], size=(n, nb))).astype(np.float16)
        w[:, :, off:off + 2] = v.view(np.uint8).reshape(n, nb, 2)
    return w.reshape(n, nb * bb)


def dequant(w: np.ndarray, t: int, n: int, k: int) -> torch.Tensor:
    if t in (F32, F16, BF16):
        return ref.unpack(w, t)["w"]
    import gguf

    return torch.from_numpy(np.asarray(gguf.quants.dequantize(w, t), dtype=np.float32).reshape(n, k))


def magnitude(x: torch.Tensor, wd: torch.Tensor) -> torch.Tensor:
    """sum_k |x| |w|: the scale float rounding errors are measured against."""
    return (x.abs().double() @ wd.abs().double().T).float()


def k_values(t: int) -> list[int]:
    blck = cpu.TYPE_SIZES[t][0]
    if blck == 256:
        return [256, 768]
    if blck == 32:
        return [96, 160, 576, 1056]  # odd/even block counts; 576 = 16+2 and 1056 = 2*16+1 blocks (Q4_1 groups)
    return [77, 576]


@pytest.fixture(scope="module")
def lib_ok():
    if not cpu.available():
        pytest.fail(f"CPU kernels unavailable: {cpu.unavailable_reason()}")
    return True


def test_available():
    assert cpu.available(), cpu.unavailable_reason()
    assert cpu.unavailable_reason() is None
    assert cpu.isa() in ("avx512", "avx2", "scalar")
    for t in ALL_TYPES:
        assert cpu.kernel_impl(t)


def test_isa_on_this_machine(lib_ok):
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vbmi")):
        assert cpu.isa() == "avx512"
        assert cpu.kernel_impl(Q4_1) == "avx512-vnni"
        assert cpu.kernel_impl(Q8_0) == "avx512-vnni"


LEGACY = [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0]


@pytest.fixture(params=["exact", "fast"])
def mode(request, lib_ok):
    """exact: llama.cpp's float accumulation order (default); fast: the faster kernels."""
    cpu.set_exact(request.param == "exact")
    yield request.param
    cpu.set_exact(True)


@pytest.mark.parametrize("t", ALL_TYPES, ids=lambda t: NAMES[t])
def test_matches_reference_and_dequant(t, mode):
    if mode == "fast" and t not in LEGACY:
        pytest.skip("the mode only affects the legacy 32-block types")
    rng = np.random.default_rng(1000 + t)
    for k in k_values(t):
        for n in (1, 13, 37):
            w = rand_weights(t, n, k, rng)
            wd = dequant(w, t, n, k)
            for m in (1, 3, 17):
                x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32) * 2)
                yc = cpu.matmul(w, t, x)
                yr = ref.matmul(w, t, x)
                assert yc.shape == (m, n) and yc.dtype == torch.float32
                mag = magnitude(x, wd)
                err = ((yc - yr).abs() / (mag + 1e-30)).max().item()
                assert err < 4e-6, f"{NAMES[t]} N={n} K={k} M={m}: C vs reference rel err {err:.3g}"
                # sanity: dequantize-then-matmul agrees within the activation quantization error
                yd = x @ wd.T
                errd = ((yc - yd).abs() / (mag + 1e-30)).max().item()
                assert errd < 2e-2, f"{NAMES[t]} N={n} K={k} M={m}: C vs dequant rel err {errd:.3g}"


@pytest.mark.parametrize("t", [Q4_1, Q8_0, Q4_K, Q6_K, F16], ids=lambda t: NAMES[t])
def test_threads_give_identical_results(t, mode):
    rng = np.random.default_rng(7)
    k = 1536 if cpu.TYPE_SIZES[t][0] != 256 else 1024
    for m in (1, 5, 40):
        w = rand_weights(t, 301, k, rng)
        x = torch.randn(m, k)
        y1 = cpu.matmul(w, t, x, n_threads=1)
        y2 = cpu.matmul(w, t, x, n_threads=2)
        y3 = cpu.matmul(w, t, x, n_threads=3)
        assert torch.equal(y1, y2) and torch.equal(y1, y3)


def test_large_shapes_match_reference(mode):
    """Larger rows/M exercise the chunking (many chunks per thread) and the prompt path."""
    rng = np.random.default_rng(3)
    for t, n, k, m in ((Q4_1, 1536, 576, 1), (Q4_1, 576, 1536, 64), (Q8_0, 3000, 576, 2), (Q4_K, 520, 2048, 9)):
        w = rand_weights(t, n, k, rng)
        x = torch.randn(m, k)
        yc, yr = cpu.matmul(w, t, x), ref.matmul(w, t, x)
        mag = magnitude(x, dequant(w, t, n, k))
        assert ((yc - yr).abs() / mag).max().item() < 4e-6


def test_quantization_matches_reference(lib_ok):
    rng = np.random.default_rng(11)
    for trial in range(40):
        k = 512
        x = (rng.standard_normal(k) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
        if trial % 3 == 0:  # exact .5 ties after scaling: amax 127 -> id = 1
            x = (rng.integers(-254, 255, k) / 2).astype(np.float32)
            x[::32] = 127.0
        if trial % 5 == 0:
            x[:256] = 0.0
        xt = torch.from_numpy(x)
        qs, d, s = cpu.quantize_row(8, xt)
        rq, rd, rs, _ = ref.quantize_q8_0(xt.reshape(1, -1))
        assert torch.equal(qs, rq.reshape(-1).to(torch.int8))
        assert torch.equal(d, rd.reshape(-1))
        assert torch.equal(s, rs.reshape(-1))
        qs, d, bs = cpu.quantize_row(15, xt)
        rq, rd, rb = ref.quantize_q8_K(xt.reshape(1, -1))
        assert torch.equal(qs, rq.reshape(-1).to(torch.int8))
        assert torch.equal(d, rd.reshape(-1))
        assert torch.equal(bs, rb.reshape(-1).to(torch.int16))
        assert torch.equal(cpu.quantize_row(1, xt), ref.round_f16(xt))
        assert torch.equal(cpu.quantize_row(30, xt), ref.round_bf16(xt))


def test_q8_rounding_is_half_to_even(lib_ok):
    # amax = 127 -> id = 1: x*id = 2.5 must round to 2 (x86 SIMD path), not 3 (roundf in the _ref code)
    x = torch.zeros(32)
    x[0], x[1], x[2], x[3] = 127.0, 2.5, -3.5, 0.5
    qs, d, s = cpu.quantize_row(8, x)
    assert qs[:4].tolist() == [127, 2, -4, 0]
    assert d[0].item() == 1.0
    assert s[0].item() == 125.0  # fp16(d * sum(q)), sum = 127 + 2 - 4


def test_fused_and_multi(mode):
    rng = np.random.default_rng(5)
    k = 576
    ws = [(rand_weights(Q4_1, 64, k, rng), Q4_1), (rand_weights(Q4_1, 32, k, rng), Q4_1),
          (rand_weights(Q8_0, 17, k, rng), Q8_0), (rand_weights(F16, 5, k, rng), F16)]
    for m in (1, 6):
        x = torch.randn(m, k)
        sep = [cpu.matmul(w, t, x) for w, t in ws]
        plan = cpu.FusedMatmul(ws)
        y = plan(x)
        assert y.shape == (m, 64 + 32 + 17 + 5)
        for a, b in zip(plan.split(y), sep):
            assert torch.equal(a, b)
        outs = cpu.matmul_multi(ws, x)
        for a, b in zip(outs, sep):
            assert torch.equal(a, b)
        outs = ref.matmul_multi(ws, x)
        for a, b in zip(outs, sep):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    # 1-D input and preallocated output
    x1 = torch.randn(k)
    out = torch.empty(plan.N)
    assert plan(x1, out=out) is out
    assert torch.equal(out, plan(x1.reshape(1, -1)).reshape(-1))


def test_memmap_weights_strided_x_and_out(tmp_path, lib_ok):
    rng = np.random.default_rng(9)
    n, k = 45, 1536
    w = rand_weights(Q4_1, n, k, rng)
    path = tmp_path / "w.bin"
    path.write_bytes(w.tobytes())
    wm = np.memmap(path, dtype=np.uint8, mode="r", shape=w.shape)
    assert not wm.flags.writeable
    x = torch.randn(4, k)
    y = cpu.matmul(wm, Q4_1, x)
    assert torch.equal(y, cpu.matmul(w, Q4_1, x))
    # torch uint8 weights
    assert torch.equal(y, cpu.matmul(torch.from_numpy(w), Q4_1, x))
    # x rows with a stride (a column slice of a wider tensor), out with a stride
    big = torch.randn(4, k + 64)
    big[:, :k] = x
    out_big = torch.full((4, n + 3), -1.0)
    out = out_big[:, :n]
    assert cpu.matmul(w, Q4_1, big[:, :k], out=out) is out
    assert torch.equal(out, y)
    assert (out_big[:, n:] == -1.0).all()
    # 1-D x
    assert torch.equal(cpu.matmul(w, Q4_1, x[0]), y[0])
    # broadcast (stride 0) rows are handled
    xb = x[0].expand(3, k)
    assert torch.equal(cpu.matmul(w, Q4_1, xb), y[0].expand(3, n))
    # the torch reference reads the read-only memmap too
    yr = ref.matmul(wm, Q4_1, x)
    assert torch.allclose(yr, y, rtol=1e-5, atol=1e-4)
    # unchecked pointer path
    plan = cpu.FusedMatmul([(wm, Q4_1)])
    yp = torch.empty(4, n)
    plan.run_ptr(x.data_ptr(), yp.data_ptr(), 4)
    assert torch.equal(yp, y)


def test_bad_arguments(lib_ok):
    rng = np.random.default_rng(1)
    w = rand_weights(Q4_1, 8, 64, rng)
    with pytest.raises(ValueError):
        cpu.matmul(w, Q4_1, torch.randn(1, 96))  # wrong K
    with pytest.raises(TypeError):
        cpu.matmul(w, Q4_1, torch.randn(1, 64, dtype=torch.float64))
    with pytest.raises(ValueError):
        cpu.matmul(w, 99, torch.randn(1, 64))
    with pytest.raises(ValueError):
        cpu.matmul(w, Q4_1, torch.randn(2, 64), out=torch.empty(3, 8))


def test_compile_error_gives_clear_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "kernels.h").write_text("/* empty */\n")
    (src / "kernels.c").write_text("int broken( { return 0; }\n")
    (src / "ops.c").write_text("/* empty */\n")
    (src / "quantize.c").write_text("/* empty */\n")
    path, reason = cpu.build(source_dir=src, cache_dir=tmp_path / "cache")
    assert path is None
    assert "compiling the CPU kernels failed" in reason and "error" in reason


def test_missing_compiler_gives_clear_reason(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    setup = f"import ggrun.cpu as c; c.configure(cc={str(tmp_path / 'no-such-gcc')!r}); "
    code = setup + "print(c.available()); print(c.unavailable_reason())"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "False"
    assert "no C compiler" in lines[1]
    # and the torch fallback still works
    code = setup + textwrap.dedent("""
        import torch
        with __import__('pytest').raises(RuntimeError):
            c.matmul(None, 3, torch.zeros(1, 32))
    """)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_configure_disabled():
    code = "import ggrun.cpu as c; c.configure(enabled=False); print(c.available(), c.unavailable_reason())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False disabled by ggrun.cpu.configure(enabled=False) (ggrun --no-cpu-kernels)"


def test_configure_after_first_use(lib_ok):
    cpu.configure()                              # the options in use: a no-op
    with pytest.raises(RuntimeError, match="before the CPU kernels are first used"):
        cpu.configure(enabled=False)
    with pytest.raises(RuntimeError, match="before the CPU kernels are first used"):
        cpu.configure(extra_cflags=["-march=x86-64"])
    with pytest.raises(TypeError):
        cpu.configure(extra_cflags="-march=x86-64")
    assert cpu.available()


_ISA_CHECK = textwrap.dedent("""
    import sys, numpy as np, torch
    sys.path.insert(0, {testdir!r})
    from test_cpu_kernels import rand_weights, dequant, magnitude, ALL_TYPES
    import ggrun.cpu as cpu
    from ggrun.cpu import reference as ref
    cpu.configure(extra_cflags={flags!r})
    assert cpu.isa() == {isa!r}, cpu.isa()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    for trial in range(300):  # activation quantization, byte for byte (incl. .5 ties)
        x = torch.from_numpy((rng.standard_normal(512) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32))
        if trial % 3 == 0:
            x = torch.from_numpy((rng.integers(-254, 255, 512) / 2).astype(np.float32))
            x[::32] = 127.0
        qs, d, s = cpu.quantize_row(9, x)
        rq, rd, rs, _ = ref.quantize_q8_0(x.reshape(1, -1))
        assert torch.equal(qs, rq.reshape(-1).to(torch.int8)) and torch.equal(d, rd.reshape(-1)) and torch.equal(s, rs.reshape(-1))
        qs, d, bs = cpu.quantize_row(15, x)
        rq, rd, rb = ref.quantize_q8_K(x.reshape(1, -1))
        assert torch.equal(qs, rq.reshape(-1).to(torch.int8)) and torch.equal(d, rd.reshape(-1))
        assert torch.equal(bs, rb.reshape(-1).to(torch.int16))
        assert torch.equal(cpu.quantize_row(1, x), ref.round_f16(x))
    for exact in (True, False):
        cpu.set_exact(exact)
        for t in ALL_TYPES:
            blck = cpu.TYPE_SIZES[t][0]
            k = 512 if blck == 256 else (576 if blck == 32 else 77)
            for m in (1, 5, 9):
                w = rand_weights(t, 19, k, rng)
                x = torch.randn(m, k)
                err = ((cpu.matmul(w, t, x) - ref.matmul(w, t, x)).abs() / magnitude(x, dequant(w, t, 19, k))).max().item()
                assert err < 4e-6, (t, m, exact, err)
    print("ok")
""")


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo") or "avx2" not in open("/proc/cpuinfo").read(),
                    reason="needs an x86-64 CPU with AVX2")
@pytest.mark.parametrize("flags,isa", [("-march=x86-64-v3", "avx2"), ("-march=x86-64", "scalar")])
def test_fallback_builds(flags, isa):
    code = _ISA_CHECK.format(testdir=os.path.dirname(os.path.abspath(__file__)), isa=isa, flags=flags.split())
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# llama.cpp's own CPU library, when one is around: quantization bytes and ggml_vec_dot_* results
# ---------------------------------------------------------------------------------------------


def _find_libggml_cpu():
    cands = [os.environ.get("GGRUN_LIBGGML_CPU", "")]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cands += glob.glob(os.path.join(repo, ".cache", "llama.cpp", "*", "llama.cpp", "build", "bin", "libggml-cpu.so"))
    for c in cands:
        if c and os.path.isfile(c):
            return c
    return None


_VEC_DOT = {Q4_0: ("q4_0_q8_0", 8), Q4_1: ("q4_1_q8_1", 9), Q5_0: ("q5_0_q8_0", 8), Q5_1: ("q5_1_q8_1", 9),
            Q8_0: ("q8_0_q8_0", 8), Q2_K: ("q2_K_q8_K", 15), Q3_K: ("q3_K_q8_K", 15), Q4_K: ("q4_K_q8_K", 15),
            Q5_K: ("q5_K_q8_K", 15), Q6_K: ("q6_K_q8_K", 15), F16: ("f16", 1), BF16: ("bf16", 30), F32: ("f32", 0)}


@pytest.fixture(scope="module")
def ggml():
    path = _find_libggml_cpu()
    if path is None:
        pytest.skip("llama.cpp's libggml-cpu.so not found (set GGRUN_LIBGGML_CPU)")
    lib = ctypes.CDLL(path)
    lib.ggml_cpu_init()
    return lib


def _ggml_from_float(lib, vt: int, x: np.ndarray) -> np.ndarray:
    k = x.size
    vp = ctypes.c_void_p
    if vt in (8, 9, 15):
        name = {8: "quantize_row_q8_0", 9: "quantize_row_q8_1", 15: "quantize_row_q8_K"}[vt]
        bsz, blk = {8: (34, 32), 9: (36, 32), 15: (292, 256)}[vt]
        out = np.zeros(k // blk * bsz, np.uint8)
    elif vt in (1, 30):
        name = "ggml_cpu_fp32_to_fp16" if vt == 1 else "ggml_cpu_fp32_to_bf16"
        out = np.zeros(k, np.uint16)
    else:
        return np.ascontiguousarray(x)
    f = getattr(lib, name)
    f.argtypes = [vp, vp, ctypes.c_int64]
    f.restype = None
    f(x.ctypes.data, out.ctypes.data, k)
    return out


def test_quantization_matches_libggml(ggml, lib_ok):
    rng = np.random.default_rng(21)
    for trial in range(60):
        x = (rng.standard_normal(512) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
        if trial % 3 == 0:
            x = (rng.integers(-254, 255, 512) / 2).astype(np.float32)
            x[::32] = 127.0
        if trial % 7 == 0:
            x[:256] = 0.0
        xt = torch.from_numpy(x)
        b = _ggml_from_float(ggml, 8, x).reshape(-1, 34)
        qs, d, _ = cpu.quantize_row(8, xt)
        assert np.array_equal(b[:, 2:].view(np.int8).reshape(-1), qs.numpy())
        assert np.array_equal(b[:, :2].copy().view(np.float16).astype(np.float32).reshape(-1), d.numpy())
        b = _ggml_from_float(ggml, 9, x).reshape(-1, 36)
        qs, d, s = cpu.quantize_row(9, xt)
        assert np.array_equal(b[:, 4:].view(np.int8).reshape(-1), qs.numpy())
        assert np.array_equal(b[:, :2].copy().view(np.float16).astype(np.float32).reshape(-1), d.numpy())
        assert np.array_equal(b[:, 2:4].copy().view(np.float16).astype(np.float32).reshape(-1), s.numpy())
        b = _ggml_from_float(ggml, 15, x).reshape(-1, 292)
        qs, d, bs = cpu.quantize_row(15, xt)
        gd = b[:, :4].copy().view(np.float32).reshape(-1)
        assert np.array_equal(gd, d.numpy())
        assert np.array_equal(b[:, 4:260].view(np.int8).reshape(-1), qs.numpy())
        gb = b[:, 260:].copy().view(np.int16)
        gb[gd == 0] = 0  # ggml leaves bsums unset for an all-zero superblock (never read: d = 0)
        assert np.array_equal(gb.reshape(-1), bs.numpy())
        assert np.array_equal(_ggml_from_float(ggml, 1, x), cpu.quantize_row(1, xt).numpy().astype(np.float16).view(np.uint16))
        g = _ggml_from_float(ggml, 30, x).astype(np.uint32) << 16
        assert np.array_equal(g.view(np.float32), cpu.quantize_row(30, xt).numpy())


@pytest.mark.parametrize("t", ALL_TYPES, ids=lambda t: NAMES[t])
def test_matches_libggml_vec_dot(t, ggml, lib_ok):
    name, vt = _VEC_DOT[t]
    f = getattr(ggml, "ggml_vec_dot_" + name)
    vp = ctypes.c_void_p
    f.argtypes = [ctypes.c_int, vp, ctypes.c_size_t, vp, ctypes.c_size_t, vp, ctypes.c_size_t, ctypes.c_int]
    f.restype = None
    rng = np.random.default_rng(31 + t)
    blck = cpu.TYPE_SIZES[t][0]
    k = 1536 if blck == 256 else 576
    n, m = 23, 3 if t not in LEGACY else 10  # M=10: the multi-token paths too
    w = rand_weights(t, n, k, rng)
    x = torch.from_numpy((rng.standard_normal((m, k)) * 3).astype(np.float32))
    yc = cpu.matmul(w, t, x).numpy()
    yg = np.zeros((m, n), np.float32)
    s = ctypes.c_float()
    for i in range(m):
        xq = _ggml_from_float(ggml, vt, np.ascontiguousarray(x[i].numpy()))
        for j in range(n):
            wr = np.ascontiguousarray(w[j])
            f(k, ctypes.addressof(s), 0, wr.ctypes.data, 0, xq.ctypes.data, 0, 1)
            yg[i, j] = s.value
    mag = magnitude(x, dequant(w, t, n, k)).numpy()
    err = (np.abs(yc - yg) / mag).max()
    assert err < 1e-6, f"{NAMES[t]}: C vs ggml_vec_dot rel err {err:.3g}"
    if t in LEGACY:  # exact mode (the default): bit-identical to llama.cpp
        assert cpu.get_exact()
        assert np.array_equal(yc.view(np.uint32), yg.view(np.uint32)), f"{NAMES[t]}: not bit-identical"
    err_ref = (np.abs(ref.matmul(w, t, x).numpy() - yg) / mag).max()
    assert err_ref < 1e-6, f"{NAMES[t]}: reference vs ggml_vec_dot rel err {err_ref:.3g}"
