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
TYPE_NAMES = {Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1", Q8_0: "Q8_0", Q2_K: "Q2_K", Q3_K: "Q3_K",
              Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K"}


def n_fields(ggml_type: int) -> int:
    """ND: the f16 fields per block in the d plane (0: no plane)."""
    _, ts, wpb, _ = LAYOUTS[int(ggml_type)]
    return (ts - 4 * wpb) // 2


@dataclass
class Packed:
    """One weight matrix [n_out, n_in] on the device, in the kernels' layout."""

    ggml_type: int
    n_out: int
    n_in: int
    w: torch.Tensor                 # int32 [n_out, n_blocks * WPB], contiguous
    d: torch.Tensor | None          # float16 [n_out, n_blocks * ND] or None

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

    def check(self) -> None:
        """Assert the layout the kernels rely on (dtypes, shapes, contiguity)."""
        bs, _, wpb, doff = LAYOUTS[self.ggml_type]
        assert self.n_in % bs == 0, (self.n_in, bs)
        nb = self.n_in // bs
        assert self.w.dtype == torch.int32 and self.w.is_contiguous(), (self.w.dtype, self.w.stride())
        assert tuple(self.w.shape) == (self.n_out, nb * wpb), (tuple(self.w.shape), self.n_out, nb * wpb)
        if doff >= 0:
            assert self.d is not None and self.d.dtype == torch.float16 and self.d.is_contiguous()
            assert tuple(self.d.shape) == (self.n_out, nb * n_fields(self.ggml_type))
            assert self.d.device == self.w.device
        else:
            assert self.d is None


def supported(ggml_type: int) -> bool:
    return int(ggml_type) in LAYOUTS


def pack(data, ggml_type: int, device=None) -> Packed:
    """Raw GGUF rows (uint8 [n_out, row_bytes]: numpy memmap or torch tensor) → ``Packed``
    on ``device`` (the re-layout runs there)."""
    ggml_type = int(ggml_type)
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
        return Packed(ggml_type, n_out, nb * bs, w, None)
    nd = n_fields(ggml_type)
    end = doff + 2 * nd
    body = torch.cat([blocks[..., :doff], blocks[..., end:]], dim=-1) if doff else blocks[..., end:]
    w = body.contiguous().view(torch.int32).reshape(n_out, nb * wpb)
    d = blocks[..., doff:end].contiguous().view(torch.float16).reshape(n_out, nb * nd)
    return Packed(ggml_type, n_out, nb * bs, w, d)


def unpack(p: Packed) -> torch.Tensor:
    """``Packed`` → the GGUF bytes, uint8 [n_out, row_bytes] (on the same device)."""
    bs, ts, wpb, doff = LAYOUTS[p.ggml_type]
    nb = p.n_in // bs
    body = p.w.reshape(p.n_out, nb, wpb).view(torch.uint8)
    if doff < 0:
        return body.reshape(p.n_out, nb * ts).clone()
    d = p.d.reshape(p.n_out, nb, n_fields(p.ggml_type)).view(torch.uint8)
    parts = [body[..., :doff], d, body[..., doff:]]
    return torch.cat(parts, dim=-1).reshape(p.n_out, nb * ts)


def concat(ps: list[Packed]) -> tuple[Packed, list[Packed]]:
    """Several matrices of one type and width stacked by rows (fused QKV, gate/up).

    Returns the stacked matrix and each part again as a row slice of it: keep the slices
    instead of the inputs and the memory is not doubled."""
    t, k = ps[0].ggml_type, ps[0].n_in
    assert all(p.ggml_type == t and p.n_in == k for p in ps)
    view = _adjacent_rows(ps)
    if view is not None:          # already consecutive rows of one buffer (stacked before): no copy
        return view, list(ps)
    w = torch.cat([p.w for p in ps], 0)
    d = torch.cat([p.d for p in ps], 0) if ps[0].d is not None else None
    parts, a = [], 0
    for p in ps:
        parts.append(Packed(t, p.n_out, k, w[a:a + p.n_out], d[a:a + p.n_out] if d is not None else None))
        a += p.n_out
    return Packed(t, a, k, w, d), parts


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


def _adjacent_rows(ps: list[Packed]) -> Packed | None:
    w = _rows_view([p.w for p in ps])
    if w is None:
        return None
    d = None
    if ps[0].d is not None:
        d = _rows_view([p.d for p in ps])
        if d is None:
            return None
    return Packed(ps[0].ggml_type, w.shape[0], ps[0].n_in, w, d)
