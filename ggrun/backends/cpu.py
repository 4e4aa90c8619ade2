"""CPU backend: quantized matmuls in C kernels (llama.cpp's numerics), the rest in torch.

When no C compiler is there, the pure-torch reference of the same numerics runs instead
(slower, same tokens).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ..weights import QuantWeight

log = logging.getLogger("ggrun")


def _kernels():
    """The C kernel module when it compiled on this machine, else the torch reference."""
    try:
        from .. import cpu as kernels
    except ImportError:  # pragma: no cover - the package ships it
        kernels = None
    if kernels is not None and kernels.available():
        return kernels, "c"
    from ..cpu import reference

    if kernels is not None:
        log.warning("ggrun: C kernels unavailable (%s): using the slower torch path", kernels.unavailable_reason())
    return reference, "torch"


class CPUBackend:
    """Runs the model's heavy ops on the CPU with ``n_threads`` threads."""

    name = "CPU"

    def __init__(self, n_threads: int | None = None):
        import os

        self.n_threads = n_threads or min(os.cpu_count() or 1, 8)
        self.k, self.kind = _kernels()

    # --- weights ---------------------------------------------------------------------
    def embed(self, w: QuantWeight, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N] → rows of the embedding matrix [N, D] f32 (only those rows are decoded)."""
        from ..quants import get_rows

        return get_rows(w.data, w.ggml_type, tokens)

    def matmul(self, w: QuantWeight, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] f32 → x @ W^T [M, N] f32."""
        return self.k.matmul(w.data, w.ggml_type, x.contiguous(), n_threads=self.n_threads)

    def matmul_many(self, ws: list[QuantWeight], x: torch.Tensor) -> list[torch.Tensor]:
        """Several weights applied to the same input (fused QKV, gate/up): x quantized once."""
        x = x.contiguous()
        many = getattr(self.k, "matmul_multi", None)
        if many is not None:
            return many([(w.data, w.ggml_type) for w in ws], x, n_threads=self.n_threads)
        return [self.matmul(w, x) for w in ws]

    # --- activations -----------------------------------------------------------------
    @staticmethod
    def swiglu(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return F.silu(g) * u

    @staticmethod
    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scale: float) -> torch.Tensor:
        """q [n, H, hd] f32 for positions start..start+n-1; k, v [T, Hkv, hd] (T = start+n)
        → [n, H, hd] f32, causal. Q is rounded to f16 as llama.cpp does for its f16 K·Q."""
        n, H, hd = q.shape
        T, Hkv, _ = k.shape
        g = H // Hkv
        qf = q.half().float().view(n, Hkv, g, hd)                             # [n, Hkv, g, hd]
        kf, vf = k.float(), v.float()                                         # [T, Hkv, hd]
        s = torch.einsum("nkgd,tkd->kgnt", qf, kf) * scale                    # [Hkv, g, n, T]
        if n > 1:
            qpos = torch.arange(start, start + n)[:, None]                    # [n, 1]
            mask = torch.arange(T)[None, :] > qpos                            # [n, T]
            s = s.masked_fill(mask, float("-inf"))
        p = torch.softmax(s, dim=-1)
        o = torch.einsum("kgnt,tkd->nkgd", p, vf)                             # [n, Hkv, g, hd]
        return o.reshape(n, H, hd)
