"""GGUF reading: memory-mapped, exact, and every bad file answered with one clear line."""

import struct

import numpy as np
import pytest

from ggrun.errors import GGUFFormatError, ModelNotFoundError, UnsupportedModelError
from ggrun.gguf_file import GGUFFile


def test_reads_real_model_like_gguf_package(smollm2_path):
    import gguf

    f = GGUFFile(smollm2_path)
    r = gguf.GGUFReader(smollm2_path)
    assert f.version == 3 and f.architecture == "llama"
    assert len(f.tensors) == len(r.tensors) == 272
    for t in r.tensors[:20]:
        mine = f.tensors[t.name]
        assert mine.ggml_type == int(t.tensor_type)
        assert mine.offset == t.data_offset
        assert np.array_equal(np.asarray(mine.data).reshape(-1), np.asarray(t.data).reshape(-1).view(np.uint8))
    assert f.metadata["tokenizer.ggml.tokens"] == r.fields["tokenizer.ggml.tokens"].contents()
    assert f.metadata["llama.rope.freq_base"] == pytest.approx(100000.0)
    assert f.tensors["blk.0.attn_q.weight"].shape == (576, 576)
    assert f.tensors["token_embd.weight"].data.shape == (49152, 612)


def test_open_maps_and_reads_no_tensor_data(smollm2_path):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    f = GGUFFile(smollm2_path)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert isinstance(f.tensors["token_embd.weight"].data.base, np.memmap) or isinstance(
        f.tensors["token_embd.weight"].data, np.memmap)
    # the 92 MB of weights are not read at open: RSS grows by far less
    assert (after - before) * 1024 < 40 * 2**20


def _header(n_tensors=0, n_kv=1, version=3):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _kv_str(key, val):
    k, v = key.encode(), val.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v


def test_not_gguf(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(GGUFFormatError, match="not a GGUF file"):
        GGUFFile(p)


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such file"):
        GGUFFile(tmp_path / "nope.gguf")


def test_bad_version(tmp_path):
    p = tmp_path / "v.gguf"
    p.write_bytes(_header(version=7) + _kv_str("general.architecture", "llama"))
    with pytest.raises(GGUFFormatError, match="version 7"):
        GGUFFile(p)


def test_truncated_tensor_data(tiny_path, tmp_path):
    data = open(tiny_path, "rb").read()
    p = tmp_path / "trunc.gguf"
    p.write_bytes(data[: len(data) - 1000])
    with pytest.raises(GGUFFormatError, match="truncated: tensor"):
        GGUFFile(p)


def test_truncated_header(tiny_path, tmp_path):
    data = open(tiny_path, "rb").read()
    p = tmp_path / "trunc.gguf"
    p.write_bytes(data[:2000])
    with pytest.raises(GGUFFormatError, match="truncated GGUF|can.t fit"):
        GGUFFile(p)


def test_hostile_string_array_count_fails_fast(tmp_path):
    k = b"tokenizer.ggml.tokens"
    body = struct.pack("<Q", len(k)) + k + struct.pack("<I", 9) + struct.pack("<IQ", 8, 2**60)
    p = tmp_path / "hostile.gguf"
    p.write_bytes(_header() + body + b"\0" * 64)
    with pytest.raises(GGUFFormatError, match="can't fit"):
        GGUFFile(p)


def test_hostile_string_length(tmp_path):
    k = b"general.name"
    body = struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", 2**62)
    p = tmp_path / "hostile2.gguf"
    p.write_bytes(_header() + body)
    with pytest.raises(GGUFFormatError, match="truncated"):
        GGUFFile(p)


def test_hostile_kv_count(tmp_path):
    p = tmp_path / "hostile3.gguf"
    p.write_bytes(_header(n_kv=2**40) + b"\0" * 64)
    with pytest.raises(GGUFFormatError, match="more than the file can hold"):
        GGUFFile(p)


def test_unknown_tensor_type(tmp_path):
    name = b"token_embd.weight"
    t = struct.pack("<Q", len(name)) + name + struct.pack("<I", 2) + struct.pack("<QQ", 32, 4) + struct.pack("<I", 999) + struct.pack("<Q", 0)
    p = tmp_path / "badtype.gguf"
    p.write_bytes(_header(n_tensors=1) + _kv_str("general.architecture", "llama") + t + b"\0" * 1024)
    with pytest.raises(GGUFFormatError, match="unknown ggml type 999"):
        GGUFFile(p)


def test_unknown_architecture(tmp_path):
    from tiny_model import write_tiny_llama

    from ggrun.config import ModelConfig

    p = write_tiny_llama(tmp_path / "m.gguf", arch="mamba9")
    with pytest.raises(UnsupportedModelError, match="architecture 'mamba9' is not supported"):
        ModelConfig.from_gguf(GGUFFile(p))


def test_vocab_only_file_opens(vocab_dir):
    f = GGUFFile(vocab_dir / "ggml-vocab-deepseek-coder.gguf")
    assert f.tensors == {}
    assert f.metadata["tokenizer.ggml.pre"] == "deepseek-coder"


def test_gguf_v2_reads_like_v3(tiny_path, tmp_path):
    raw = bytearray(open(tiny_path, "rb").read())
    assert raw[4:8] == (3).to_bytes(4, "little")
    raw[4:8] = (2).to_bytes(4, "little")
    p = tmp_path / "v2.gguf"
    p.write_bytes(bytes(raw))
    a, b = GGUFFile(tiny_path), GGUFFile(p)
    assert b.version == 2 and a.metadata == b.metadata
    assert all(np.array_equal(a.tensors[n].data, b.tensors[n].data) for n in a.tensors)
