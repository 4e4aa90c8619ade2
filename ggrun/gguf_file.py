"""Open GGUF files: memory-mapped, validated, nothing copied.

``GGUFFile(path)`` walks the header once with bounds checks (so a truncated or hostile
file fails fast with one clear line instead of a hang or a huge allocation), then
hands the parsing to the ``gguf`` package's reader over a copy-on-write memory map.
Tensor data stays in the page cache until a kernel touches it.
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


def _bounded_walk(path: str, size: int) -> None:
    """Walk the GGUF header with bounds checks; raise GGUFFormatError on anything off.

    The ``gguf`` package trusts the counts it reads (a string array claiming 2**60
    items would loop forever); this walk checks every count against the bytes left.
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as f:
        head = f.read(min(size, 64 << 20))
    buf = memoryview(head)
    pos = 0

    def need(n: int, what: str) -> None:
        if pos + n > size:
            raise GGUFFormatError(f"{path}: truncated GGUF: {what} at byte {pos} needs {n} bytes, file has {size}")
        if pos + n > len(buf):
            raise GGUFFormatError(f"{path}: GGUF header larger than 64 MiB at {what} (byte {pos}): not supported")

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

    def skip_value(vtype: int, what: str) -> Any:
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
                pos += n
            elif sub == _STRING:
                if count * 8 > size - pos:
                    raise GGUFFormatError(f"{path}: {what}: string array of {count} items can't fit in the file")
                for _ in range(count):
                    n = read("Q", what)
                    need(n, what)
                    pos += n
            else:
                raise GGUFFormatError(f"{path}: {what}: unsupported array item type {sub}")
            return None
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
    for i in range(n_kv):
        key = read_str(f"metadata key #{i}")
        vtype = read("I", f"metadata '{key}' type")
        value = skip_value(vtype, f"metadata '{key}'")
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
        infos.append((name, offset, n_el // block * type_size))
    data_start = (pos + alignment - 1) // alignment * alignment
    for name, offset, n_bytes in infos:
        end = data_start + offset + n_bytes
        if end > size:
            raise GGUFFormatError(
                f"{path}: truncated: tensor '{name}' needs bytes {data_start + offset}..{end}, the file has {size}"
            )


def _field_value(field: Any) -> Any:
    """A gguf ReaderField as a plain Python value (str, int, float, bool, list)."""
    from gguf import GGUFValueType

    types = field.types
    if not types:
        return None
    if types[0] == GGUFValueType.ARRAY:
        if types[-1] == GGUFValueType.STRING:
            parts = field.parts
            return [bytes(parts[i]).decode("utf-8", errors="replace") for i in field.data]
        if len(field.data) == 0:
            return []
        return _contiguous(field, field.data[0], field.data[-1]).tolist()
    if types[0] == GGUFValueType.STRING:
        return bytes(field.parts[-1]).decode("utf-8", errors="replace")
    return field.parts[-1].tolist()[0]


def _contiguous(field: Any, first: int, last: int) -> np.ndarray:
    """The numeric items of an array field as one array (they lie back to back)."""
    p0 = field.parts[first]
    n = len(field.data)
    start = p0.__array_interface__["data"][0]
    end = field.parts[last].__array_interface__["data"][0]
    if end - start == (n - 1) * p0.itemsize:
        return np.lib.stride_tricks.as_strided(p0, shape=(n,), strides=(p0.itemsize,)).copy()
    return np.concatenate([field.parts[i] for i in field.data])


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
        _bounded_walk(self.path, size)
        from gguf import GGUFReader

        try:
            reader = GGUFReader(self.path, "r")
        except (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError) as e:
            raise GGUFFormatError(f"{self.path}: invalid GGUF: {e}") from None
        self.version = int(reader.fields["GGUF.version"].parts[-1][0])
        self.alignment = int(reader.alignment)
        self.data_offset = int(reader.data_offset)
        self.file_size = size
        self.metadata: dict[str, Any] = {
            k: _field_value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")
        }
        self.tensors: dict[str, TensorInfo] = {}
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            raw = reader.data[t.data_offset : t.data_offset + int(t.n_bytes)]
            if len(shape) >= 2:
                raw = raw.reshape(-1, int(t.n_bytes) // int(np.prod(shape[:-1])))
            self.tensors[t.name] = TensorInfo(
                name=t.name, ggml_type=int(t.tensor_type), shape=shape, offset=int(t.data_offset),
                n_bytes=int(t.n_bytes), data=raw,
            )
        self._reader = reader

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
