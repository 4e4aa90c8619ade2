"""Write GGUF files: typed metadata copied from a GGUFFile, tensors streamed one by one.

``GGUFOut`` writes into ``path + '.tmp'`` and renames at ``commit()``; any failure (a full
disk included) removes the temporary file, so no half-written output is ever left behind.
gguf-py's GGUFWriter writes the header, metadata and tensor infos; tensor data goes straight
to the file descriptor, each tensor padded to the alignment, exactly as llama.cpp lays it out.
"""

from __future__ import annotations

import errno
import math
import os
import struct
from typing import Any, Iterable

import numpy as np

from .errors import GGRunError
from .gguf_file import GGUFFile

def _row_size(t: int, n: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    bs, ts = GGML_QUANT_SIZES[GGMLQuantizationType(t)]
    return n // bs * ts


# --------------------------------------------------------------------------------------
# Typed metadata (GGUFFile keeps the values; writing them back needs their GGUF types)
# --------------------------------------------------------------------------------------

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def kv_types(f: GGUFFile) -> dict[str, tuple[int, int | None]]:
    """key → (GGUF value type, array item type or None), read from the (already validated) header."""
    with open(f.path, "rb") as fh:
        buf = fh.read(f.data_offset)
    pos = 24
    n_kv = struct.unpack_from("<Q", buf, 16)[0]
    out: dict[str, tuple[int, int | None]] = {}

    def skip_str(p: int) -> int:
        return p + 8 + struct.unpack_from("<Q", buf, p)[0]

    for _ in range(n_kv):
        n = struct.unpack_from("<Q", buf, pos)[0]
        key = buf[pos + 8:pos + 8 + n].decode("utf-8")
        pos += 8 + n
        vt = struct.unpack_from("<I", buf, pos)[0]
        pos += 4
        sub = None
        if vt in _SCALAR:
            pos += struct.calcsize("<" + _SCALAR[vt])
        elif vt == 8:
            pos = skip_str(pos)
        else:
            sub, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if sub in _SCALAR:
                pos += count * struct.calcsize("<" + _SCALAR[sub])
            else:
                for _ in range(count):
                    pos = skip_str(pos)
        out[key] = (vt, sub)
    return out


def typed_metadata(f: GGUFFile) -> list[tuple[str, Any, int, int | None]]:
    """[(key, value, value type, item type)] in file order."""
    types = kv_types(f)
    return [(k, f.metadata[k], *types[k]) for k in f.metadata]


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

class GGUFOut:
    """A GGUF file written tensor by tensor into ``path + '.tmp'``, renamed to ``path`` by ``commit()``;
    ``abort()`` (or an exception inside ``with``) removes it.

    gguf.GGUFWriter writes the header, the metadata and the tensor infos; the tensor data then
    goes straight to the file descriptor (chunks of any size, each tensor padded to the alignment).
    """

    def __init__(self, path: str, kvs: list[tuple[str, Any, int, int | None]], tensors: list[tuple[str, tuple[int, ...], int]],
                 alignment: int = 32):
        import gguf

        self.path = str(path)
        self.tmp = self.path + ".tmp"
        self.alignment = alignment
        arch = next((v for k, v, *_ in kvs if k == "general.architecture"), "llama")
        self.w = _Writer(self.tmp, arch)
        self.w.kv_data[0].clear()          # keep the given order, general.architecture included
        self.w.data_alignment = alignment
        for key, val, vt, sub in kvs:
            vtype = gguf.GGUFValueType(vt)
            if vtype == gguf.GGUFValueType.ARRAY:
                self.w.add_key_value(key, val, vtype, None if sub is None else gguf.GGUFValueType(sub))
            else:
                self.w.add_key_value(key, val, vtype)
        self.expected: list[tuple[str, int]] = []
        for name, shape, t in tensors:
            rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
            nbytes = rows * _row_size(t, shape[-1])
            # the element shape in torch order; GGUFWriter writes it reversed (ggml's ne)
            self.w.add_tensor_info(name, list(shape), np.dtype(np.float32), nbytes, raw_dtype=gguf.GGMLQuantizationType(t))
            self.expected.append((name, nbytes))
        self._i = 0
        try:
            self.w.write_header_to_file()
            self.w.write_kv_data_to_file()
            self.w.write_ti_data_to_file()
            fout = self.w.fout[0]
            fout.flush()
            self._fd = fout.fileno()
            self._pos = fout.tell()
            self._pad()                    # the data section starts aligned
            self._data_start = self._pos
        except OSError as e:
            self.abort()
            raise _io_error(self.path, e) from None

    def _pad(self) -> None:
        n = -self._pos % self.alignment
        if n:
            _write(self._fd, np.zeros(n, np.uint8))
            self._pos += n

    def write(self, data: np.ndarray | bytes) -> None:
        """The next tensor's bytes (in the order given), whole."""
        a = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
        self.write_stream([a])

    def write_stream(self, chunks: Iterable[np.ndarray]) -> None:
        """The next tensor as a sequence of byte chunks (bounded memory for big tensors)."""
        name, nbytes = self.expected[self._i]
        try:
            n = 0
            for c in chunks:
                c = np.ascontiguousarray(c).view(np.uint8).reshape(-1)
                _write(self._fd, c)
                n += c.size
            self._pos += n
            if n != nbytes:
                raise GGRunError(f"internal: tensor '{name}' has {n} bytes, expected {nbytes}")
            self._pad()
        except OSError as e:
            self.abort()
            raise _io_error(self.path, e) from None
        except BaseException:
            self.abort()
            raise
        self._i += 1

    def file_size(self) -> int:
        """The size the finished file will have."""
        a = self.alignment
        return self._data_start + sum((n + a - 1) // a * a for _, n in self.expected)

    def commit_sparse(self) -> None:
        """Finish with all tensor data zero, as a sparse file (no data written): for size checks and dry runs."""
        try:
            os.ftruncate(self._fd, self.file_size())
            self._i = len(self.expected)
            self.commit()
        except OSError as e:
            self.abort()
            raise _io_error(self.path, e) from None

    def commit(self) -> None:
        if self._i != len(self.expected):
            self.abort()
            raise GGRunError(f"internal: {len(self.expected) - self._i} tensors were not written")
        try:
            self.w.close()
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            raise _io_error(self.path, e) from None

    def abort(self) -> None:
        try:
            self.w.close()
        except Exception:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass

    def __enter__(self) -> "GGUFOut":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _write(fd: int, a: np.ndarray) -> None:
    """Every tensor byte goes through here (one place to fail in tests)."""
    mv = memoryview(a).cast("B")
    while mv:
        n = os.write(fd, mv[:1 << 30])
        mv = mv[n:]


def _io_error(path: str, e: OSError) -> GGRunError:
    if e.errno == errno.ENOSPC:
        return GGRunError(f"{path}: no space left on the disk (nothing was written)")
    return GGRunError(f"{path}: {e.strerror or e} (nothing was written)")


_NP_ITEM = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}


def _make_writer_class():
    import gguf

    class Writer(gguf.GGUFWriter):
        """GGUFWriter that also writes empty arrays (llama.cpp copies them)."""

        def _pack_val(self, val, vtype, add_vtype, sub_type=None):
            if vtype == gguf.GGUFValueType.ARRAY and len(val) == 0:
                out = bytearray()
                if add_vtype:
                    out += self._pack("I", vtype)
                out += self._pack("I", sub_type if sub_type is not None else gguf.GGUFValueType.UINT8)
                out += self._pack("Q", 0)
                return bytes(out)
            if vtype == gguf.GGUFValueType.ARRAY and sub_type is not None and self.endianess == gguf.GGUFEndian.LITTLE:
                head = (struct.pack("<I", vtype) if add_vtype else b"") + struct.pack("<IQ", sub_type, len(val))
                if sub_type == gguf.GGUFValueType.STRING:
                    pack = struct.Struct("<Q").pack
                    enc = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in val]
                    return head + b"".join(pack(len(e)) + e for e in enc)
                if sub_type in _NP_ITEM:
                    return head + np.asarray(val, dtype=_NP_ITEM[sub_type]).tobytes()
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return Writer


class _WriterProxy:
    _cls = None

    def __call__(self, *a, **k):
        if _WriterProxy._cls is None:
            import logging

            logging.getLogger("gguf.gguf_writer").setLevel(logging.WARNING)
            _WriterProxy._cls = _make_writer_class()
        return _WriterProxy._cls(*a, **k)


_Writer = _WriterProxy()
