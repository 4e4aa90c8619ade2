"""Open GGUF files: memory-mapped, validated, nothing copied.

``GGUFFile(path)`` walks the header once with bounds checks (so a truncated or hostile
file fails fast with one clear line instead of a hang or a huge allocation), then
maps the file read-only. Tensor data stays in the page cache until a kernel touches it.

Why not ``gguf.GGUFReader``: it builds a numpy view per array item (3.5 s for the
92 MB SmolLM2 file, 100k vocab strings) and trusts the counts it reads. The walk here
parses the same format in ~0.2 s with bounds checks; the ``gguf`` package still gives
the type tables (GGML_QUANT_SIZES) and writes files (quantize, convert).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GGUFFormatError, ModelNotFoundError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)

# GGUF value types → struct format (scalars); 8 = string, 9 = array.
_SCALAR_FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file.

    ``shape`` is in torch order (rows first): GGUF's ``ne`` reversed, so a weight
    ``blk.0.attn_q.weight`` of a llama model is ``(n_out, n_in)``.
    ``data`` is a read-only uint8 view of the raw blocks, shape ``(rows, row_bytes)``
    for 2-D tensors and ``(n_bytes,)`` otherwise.
    """

    name: str
    ggml_type: int
    shape: tuple[int, ...]
    offset: int
    n_bytes: int
    data: np.ndarray

    @property
    def type_name(self) -> str:
        from gguf import GGMLQuantizationType

        try:
            return GGMLQuantizationType(self.ggml_type).name
        except ValueError:
            return f"type{self.ggml_type}"

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


def _bounded_walk(path: str, size: int) -> tuple[int, int, int, dict[str, Any], list[tuple[str, list[int], int, int, int]]]:
    """Parse the GGUF header with bounds checks; raise GGUFFormatError on anything off.

    Returns (version, alignment, data_start, metadata, [(name, dims, type, offset, n_bytes)]).
    Every count is checked against the bytes left, so a hostile file (a string array
    claiming 2**60 items, a tensor past the end) fails at once with one clear line.
    """
    limit = 4 << 20
    while True:
        with open(path, "rb") as f:
            head = f.read(min(size, limit))
        try:
            return _walk(path, size, memoryview(head))
        except _NeedMore:
            if limit >= _MAX_HEADER:
                raise GGUFFormatError(f"{path}: GGUF header larger than {_MAX_HEADER >> 20} MiB: not supported") from None
            limit *= 4


class _NeedMore(Exception):
    """The header goes on past the bytes read so far."""


_MAX_HEADER = 256 << 20


def _walk(path: str, size: int, buf: memoryview):
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    pos = 0

    def need(n: int, what: str) -> None:
        if pos + n > size:
            raise GGUFFormatError(f"{path}: truncated GGUF: {what} at byte {pos} needs {n} bytes, file has {size}")
        if pos + n > len(buf):
            raise _NeedMore

    def read(fmt: str, what: str) -> Any:
        nonlocal pos
        n = struct.calcsize("<" + fmt)
        need(n, what)
        (v,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += n
        return v

    def read_str(what: str) -> str:
        nonlocal pos
        n = read("Q", what)
        need(n, what)
        s = bytes(buf[pos : pos + n])
        pos += n
        try:
            return s.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFFormatError(f"{path}: {what} at byte {pos - n} is not valid UTF-8") from None

    def read_value(vtype: int, what: str) -> Any:
        nonlocal pos
        if vtype in _SCALAR_FMT:
            return read(_SCALAR_FMT[vtype], what)
        if vtype == _STRING:
            return read_str(what)
        if vtype == _ARRAY:
            sub = read("I", what)
            count = read("Q", what)
            if sub in _SCALAR_FMT:
                n = count * struct.calcsize("<" + _SCALAR_FMT[sub])
                need(n, what)
                arr = np.frombuffer(buf, dtype=np.dtype("<" + _SCALAR_FMT[sub]), count=count, offset=pos)
                pos += n
                return arr.tolist()
            if sub == _STRING:
                if count * 8 > size - pos:
                    raise GGUFFormatError(f"{path}: {what}: string array of {count} items can't fit in the file")
                out = []
                unpack = struct.unpack_from
                for _ in range(count):
                    need(8, what)
                    (n,) = unpack("<Q", buf, pos)
                    pos += 8
                    need(n, what)
                    out.append(str(buf[pos:pos + n], "utf-8", "replace"))
                    pos += n
                return out
            raise GGUFFormatError(f"{path}: {what}: unsupported array item type {sub}")
        raise GGUFFormatError(f"{path}: {what}: unknown value type {vtype}")

    need(4, "magic")
    if bytes(buf[0:4]) != GGUF_MAGIC:
        raise GGUFFormatError(f"{path}: not a GGUF file (magic {bytes(buf[0:4])!r}, expected b'GGUF')")
    pos = 4
    version = read("I", "version")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFFormatError(f"{path}: GGUF version {version} is not supported (only 2 and 3)")
    n_tensors = read("Q", "tensor count")
    n_kv = read("Q", "metadata count")
    if n_kv > size // 12 or n_tensors > size // 24:
        raise GGUFFormatError(f"{path}: header claims {n_kv} metadata keys and {n_tensors} tensors: more than the file can hold")
    alignment = 32
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = read_str(f"metadata key #{i}")
        vtype = read("I", f"metadata '{key}' type")
        value = read_value(vtype, f"metadata '{key}'")
        if key in metadata:
            raise GGUFFormatError(f"{path}: metadata key '{key}' appears twice")
        metadata[key] = value
        if key == "general.alignment":
            if not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise GGUFFormatError(f"{path}: general.alignment = {value!r} is not a power of two")
            alignment = value
    infos = []
    for i in range(n_tensors):
        name = read_str(f"tensor #{i} name")
        n_dims = read("I", f"tensor '{name}' dims")
        if n_dims > 4:
            raise GGUFFormatError(f"{path}: tensor '{name}' has {n_dims} dimensions (at most 4)")
        dims = [read("Q", f"tensor '{name}' shape") for _ in range(n_dims)]
        ttype = read("I", f"tensor '{name}' type")
        offset = read("Q", f"tensor '{name}' offset")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise GGUFFormatError(f"{path}: tensor '{name}' has unknown ggml type {ttype}") from None
        n_el = int(np.prod(dims)) if dims else 1
        if any(d <= 0 for d in dims) or n_el > size * 64:
            raise GGUFFormatError(f"{path}: tensor '{name}' has an impossible shape {dims}")
        if dims and dims[0] % block:
            raise GGUFFormatError(f"{path}: tensor '{name}': row length {dims[0]} is not a multiple of the block size {block}")
        infos.append((name, dims, ttype, offset, n_el // block * type_size))
    data_start = (pos + alignment - 1) // alignment * alignment
    seen = set()
    for name, _dims, _t, offset, n_bytes in infos:
        if name in seen:
            raise GGUFFormatError(f"{path}: tensor '{name}' appears twice")
        seen.add(name)
        end = data_start + offset + n_bytes
        if end > size:
            raise GGUFFormatError(
                f"{path}: truncated: tensor '{name}' needs bytes {data_start + offset}..{end}, the file has {size}"
            )
    return version, alignment, data_start, metadata, infos


class GGUFFile:
    """A GGUF file opened for reading: ``metadata`` (dict) and ``tensors`` (name → TensorInfo).

    Opening maps the file; no tensor data is read until it is used.

    >>> f = GGUFFile("model.gguf")
    >>> f.architecture, f.tensors["token_embd.weight"].shape
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        p = Path(self.path)
        if not p.exists():
            raise ModelNotFoundError(f"{self.path}: no such file")
        if p.is_dir():
            raise ModelNotFoundError(f"{self.path}: is a folder, not a GGUF file")
        size = p.stat().st_size
        if size < 24:
            raise GGUFFormatError(f"{self.path}: not a GGUF file ({size} bytes)")
        self.version, self.alignment, self.data_offset, self.metadata, infos = _bounded_walk(self.path, size)
        self.file_size = size
        # one read-only map of the whole file; tensors are views into it
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if infos else np.zeros(0, np.uint8)
        self.tensors: dict[str, TensorInfo] = {}
        for name, dims, ttype, offset, n_bytes in infos:
            shape = tuple(int(d) for d in reversed(dims))              # torch order: rows first
            start = self.data_offset + offset
            raw = self._map[start:start + n_bytes]
            if len(shape) >= 2:
                raw = raw.reshape(-1, n_bytes // int(np.prod(shape[:-1])))  # (rows, row_bytes)
            self.tensors[name] = TensorInfo(name=name, ggml_type=ttype, shape=shape, offset=start,
                                            n_bytes=n_bytes, data=raw)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_get(self, suffix: str, default: Any = None) -> Any:
        """``metadata[f"{architecture}.{suffix}"]``."""
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors.values())

    def __repr__(self) -> str:
        return f"GGUFFile({self.path!r}, arch={self.architecture!r}, tensors={len(self.tensors)})"
