"""Lossless re-layout of GGUF blocks for the GPU kernels: the same bits, word-aligned.

Every packed matrix is ``w``: int32 [n_out, n_blocks * WPB] (the words of each block,
back to back) and, for most types, ``d``: float16 [n_out, n_blocks * ND] (the ND f16 fields
of each block, which lie side by side in the block, taken out of it: the scale d, or d and
the min m / dmin). With ND = 2 the kernels read the plane as int32 words (``d_words``):
one load gives both.

| type | block bytes | WPB | word layout of a block | d plane (ND) |
|---|---|---|---|---|
| Q4_K | 144 | 36 | d,dmin · scales[12] · qs[128] (the raw block) | — |
| Q5_K | 176 | 44 | d,dmin · scales[12] · qh[32] · qs[128] (the raw block) | — |
| Q6_K | 210 | 52 | ql[128] · qh[64] · scales[16] | d (1) |
| Q8_0 | 34 | 8 | qs[32] | d (1) |
| Q4_0 | 18 | 4 | qs[16] | d (1) |
| Q4_1 | 20 | 4 | qs[16] | d, m (2) |
| Q5_0 | 22 | 5 | qh[4] · qs[16] | d (1) |
| Q5_1 | 24 | 5 | qh[4] · qs[16] | d, m (2) |
| Q2_K | 84 | 20 | scales[16] · qs[64] | d, dmin (2) |
| Q3_K | 110 | 27 | hmask[32] · qs[64] · scales[12] | d (1) |

Rows of the types with WPB a multiple of 4 are whole 16-byte units (the kernels tell Triton
so: vector loads); Q5_0, Q5_1 and Q3_K blocks are only word-aligned (and their rows 16-byte
units only when the number of blocks is a multiple of 4).

**Row interleave** (``il`` = 32; Q4_K and Q6_K by default, ``INTERLEAVE``): the words of 32 rows are
woven together 16 bytes at a time, so that the 32 threads of a warp, one per row, read 512
contiguous bytes per load, and every thread needs the same activation words (one broadcast)::

    w: int32 [G, n_blocks * WPB * 32], G = ceil(n_out / 32) row groups
    word i of block b of row r  at  w[r // 32, (b * WPB/4 + i // 4) * 128 + (r % 32) * 4 + i % 4]
    d: float16 [G, n_blocks * 32 * ND]: field f of block b of row r at d[r // 32, (b * 32 + r % 32) * ND + f]

The rows past n_out of the last group are zero blocks. (Row-major, each thread loads its own
copy of the activations and block headers: measured on the H200, the batch-1 Q4_K kernel was
then bound by L1 traffic, about 3× the weight bytes, at 55–69% of the DRAM bandwidth.)

``unpack`` gives the GGUF bytes back (the tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = 2, 3, 6, 7, 8, 10, 11, 12, 13, 14

# type -> (elements per block, bytes per block, words per block, byte offset of the f16 fields or -1);
# the number of f16 fields (ND) is what the words leave: (bytes - 4 * words) / 2
LAYOUTS: dict[int, tuple[int, int, int, int]] = {
    Q4_K: (256, 144, 36, -1),
    Q5_K: (256, 176, 44, -1),
    Q6_K: (256, 210, 52, 208),
    Q8_0: (32, 34, 8, 0),
    Q4_0: (32, 18, 4, 0),
    Q4_1: (32, 20, 4, 0),
    Q5_0: (32, 22, 5, 0),
    Q5_1: (32, 24, 5, 0),
    Q2_K: (256, 84, 20, 80),
    Q3_K: (256, 110, 27, 108),
}
# type → rows per interleave group for ``pack`` (see above); ``set_interleave`` changes it (A/B runs)
INTERLEAVE: dict[int, int] = {Q4_K: 32, Q6_K: 32}
IL = 32
TYPE_NAMES = {Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1", Q8_0: "Q8_0", Q2_K: "Q2_K", Q3_K: "Q3_K",
              Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K"}


def n_fields(ggml_type: int) -> int:
    """ND: the f16 fields per block in the d plane (0: no plane)."""
    _, ts, wpb, _ = LAYOUTS[int(ggml_type)]
    return (ts - 4 * wpb) // 2


IL_TYPES = (Q4_K, Q6_K)      # the types whose kernels (matvec, dequant) read the interleave


def set_interleave(ggml_type: int, rows: int) -> None:
    """Pack ``ggml_type`` (one of IL_TYPES) from now on row-interleaved (rows = 32) or row-major (0)."""
    assert rows in (0, IL) and (not rows or int(ggml_type) in IL_TYPES), (ggml_type, rows)
    if rows:
        INTERLEAVE[int(ggml_type)] = rows
    else:
        INTERLEAVE.pop(int(ggml_type), None)


@dataclass
class Packed:
    """One weight matrix [n_out, n_in] on the device, in the kernels' layout."""

    ggml_type: int
    n_out: int
    n_in: int
    w: torch.Tensor                 # int32 [n_out, n_blocks * WPB] (il = 0) or [G, n_blocks * WPB * il]
    d: torch.Tensor | None          # float16 [n_out, n_blocks * ND] or None
    il: int = 0                     # rows per interleave group (0: row-major)

    @property
    def n_blocks(self) -> int:
        return self.n_in // LAYOUTS[self.ggml_type][0]

    @property
    def wpb(self) -> int:
        return LAYOUTS[self.ggml_type][2]

    @property
    def d_words(self) -> torch.Tensor | None:
        """The d plane as the kernels read it: float16 [n_out, n_blocks] (ND = 1) or int32
        [n_out, n_blocks] (ND = 2: d in the low half of each word, m / dmin in the high)."""
        if self.d is None or n_fields(self.ggml_type) == 1:
            return self.d
        return self.d.view(torch.int32)

    @property
    def n_bytes(self) -> int:
        return self.w.numel() * 4 + (self.d.numel() * 2 if self.d is not None else 0)

    @property
    def n_groups(self) -> int:
        """Row groups of an interleaved matrix: ceil(n_out / il)."""
        return -(-self.n_out // self.il)

    def check(self) -> None:
        """Assert the layout the kernels rely on (dtypes, shapes, contiguity)."""
        bs, _, wpb, doff = LAYOUTS[self.ggml_type]
        assert self.n_in % bs == 0, (self.n_in, bs)
        nb = self.n_in // bs
        assert self.w.dtype == torch.int32 and self.w.is_contiguous(), (self.w.dtype, self.w.stride())
        shape = (self.n_groups, nb * wpb * self.il) if self.il else (self.n_out, nb * wpb)
        assert tuple(self.w.shape) == shape, (tuple(self.w.shape), shape)
        if doff >= 0:
            assert self.d is not None and self.d.dtype == torch.float16 and self.d.is_contiguous()
            nd = n_fields(self.ggml_type)
            dshape = (self.n_groups, nb * nd * self.il) if self.il else (self.n_out, nb * nd)
            assert tuple(self.d.shape) == dshape, (tuple(self.d.shape), dshape)
            assert self.d.device == self.w.device
        else:
            assert self.d is None


def supported(ggml_type: int) -> bool:
    return int(ggml_type) in LAYOUTS


def pack(data, ggml_type: int, device=None) -> Packed:
    """Raw GGUF rows (uint8 [n_out, row_bytes]: numpy memmap or torch tensor) → ``Packed``
    on ``device`` (the re-layout runs there), row-interleaved for the types of ``INTERLEAVE``."""
    ggml_type = int(ggml_type)
    il = INTERLEAVE.get(ggml_type, 0)
    if ggml_type not in LAYOUTS:
        raise ValueError(f"no GPU layout for ggml type {ggml_type}")
    bs, ts, wpb, doff = LAYOUTS[ggml_type]
    if not isinstance(data, torch.Tensor):
        import numpy as np

        data = torch.from_numpy(np.ascontiguousarray(data))
    if device is not None:
        data = data.to(device, non_blocking=True)
    assert data.dtype == torch.uint8 and data.dim() == 2, (data.dtype, data.shape)
    n_out, row_bytes = data.shape
    assert row_bytes % ts == 0, (row_bytes, ts)
    nb = row_bytes // ts
    blocks = data.reshape(n_out, nb, ts)
    if doff < 0:
        w = blocks.contiguous().view(torch.int32).reshape(n_out, nb * wpb)
        return _interleave(Packed(ggml_type, n_out, nb * bs, w, None), il)
    nd = n_fields(ggml_type)
    end = doff + 2 * nd
    body = torch.cat([blocks[..., :doff], blocks[..., end:]], dim=-1) if doff else blocks[..., end:]
    w = body.contiguous().view(torch.int32).reshape(n_out, nb * wpb)
    d = blocks[..., doff:end].contiguous().view(torch.float16).reshape(n_out, nb * nd)
    return _interleave(Packed(ggml_type, n_out, nb * bs, w, d), il)


def _weave(t: torch.Tensor, il: int, unit: int) -> torch.Tensor:
    """Rows [n, nb * unit] → row groups [G, nb * il * unit] (units of ``il`` rows side by side; the
    rows past n zeros)."""
    n, width = t.shape
    g = -(-n // il)
    padded = t
    if n % il:
        padded = t.new_zeros(g * il, width)
        padded[:n] = t
    return padded.reshape(g, il, width // unit, unit).permute(0, 2, 1, 3).reshape(g, width * il).contiguous()


def _unweave(t: torch.Tensor, n: int, il: int, unit: int) -> torch.Tensor:
    g, width = t.shape
    rows = t.reshape(g, width // (il * unit), il, unit).permute(0, 2, 1, 3).reshape(g * il, width // il)
    return rows[:n].contiguous()


def _interleave(p: Packed, il: int) -> Packed:
    """A row-major ``Packed`` woven by ``il`` rows (0: as it is): the words 4 at a time, the d
    plane one block's fields at a time."""
    if not il:
        return p
    assert p.wpb % 4 == 0, p.wpb
    d = _weave(p.d, il, n_fields(p.ggml_type)) if p.d is not None else None
    return Packed(p.ggml_type, p.n_out, p.n_in, _weave(p.w, il, 4), d, il)


def unpack(p: Packed) -> torch.Tensor:
    """``Packed`` → the GGUF bytes, uint8 [n_out, row_bytes] (on the same device)."""
    bs, ts, wpb, doff = LAYOUTS[p.ggml_type]
    nb = p.n_in // bs
    w, d = p.w, p.d
    if p.il:
        w = _unweave(w, p.n_out, p.il, 4)
        d = _unweave(d, p.n_out, p.il, n_fields(p.ggml_type)) if d is not None else None
    body = w.reshape(p.n_out, nb, wpb).view(torch.uint8)
    if doff < 0:
        return body.reshape(p.n_out, nb * ts).clone()
    d = d.reshape(p.n_out, nb, n_fields(p.ggml_type)).view(torch.uint8)
    parts = [body[..., :doff], d, body[..., doff:]]
    return torch.cat(parts, dim=-1).reshape(p.n_out, nb * ts)


def concat(ps: list[Packed]) -> tuple[Packed, list[Packed]]:
    """Several matrices of one type, width and layout stacked by rows (fused QKV, gate/up).

    Returns the stacked matrix and each part again as a row slice of it: keep the slices
    instead of the inputs and the memory is not doubled. Interleaved parts but the last must
    have whole row groups (``stackable``)."""
    t, k, il = ps[0].ggml_type, ps[0].n_in, ps[0].il
    assert stackable(ps), [(p.ggml_type, p.n_in, p.il, p.n_out) for p in ps]
    n = sum(p.n_out for p in ps)
    view = _adjacent_rows(ps, n)
    if view is not None:          # already consecutive rows of one buffer (stacked before): no copy
        return view, list(ps)
    w = torch.cat([p.w for p in ps], 0)
    d = torch.cat([p.d for p in ps], 0) if ps[0].d is not None else None
    parts, a = [], 0
    for p in ps:
        wa, wn = (a // il, p.n_groups) if il else (a, p.n_out)
        parts.append(Packed(t, p.n_out, k, w[wa:wa + wn], d[wa:wa + wn] if d is not None else None, il))
        a += p.n_out
    return Packed(t, a, k, w, d, il), parts


def stackable(ps: list[Packed]) -> bool:
    """Whether ``concat`` can stack these: one type, width and layout, and (interleaved) every
    part but the last a whole number of row groups."""
    p0 = ps[0]
    return all(p.ggml_type == p0.ggml_type and p.n_in == p0.n_in and p.il == p0.il for p in ps) and \
        (not p0.il or all(p.n_out % p0.il == 0 for p in ps[:-1]))


def _rows_view(ts: list[torch.Tensor]) -> torch.Tensor | None:
    """One view over 2-d row blocks that lie back to back in one buffer, else None."""
    t0 = ts[0]
    if any(t.untyped_storage().data_ptr() != t0.untyped_storage().data_ptr() or t.stride() != t0.stride()
           or t.shape[1] != t0.shape[1] or not t.is_contiguous() for t in ts):
        return None
    off = t0.storage_offset()
    for t in ts:
        if t.storage_offset() != off:
            return None
        off += t.shape[0] * t.stride(0)
    return t0.as_strided((sum(t.shape[0] for t in ts), t0.shape[1]), t0.stride(), t0.storage_offset())


def _adjacent_rows(ps: list[Packed], n_out: int) -> Packed | None:
    w = _rows_view([p.w for p in ps])
    if w is None:
        return None
    d = None
    if ps[0].d is not None:
        d = _rows_view([p.d for p in ps])
        if d is None:
            return None
    return Packed(ps[0].ggml_type, n_out, ps[0].n_in, w, d, ps[0].il)
