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

        from . import cpu_ops

        self.n_threads = n_threads or min(os.cpu_count() or 1, 8)
        self.k, self.kind = _kernels()
        self.ops = cpu_ops.load()                # None: torch fallbacks for the small ops
        if self.ops is None:
            log.warning("ggrun: C ops unavailable (%s): using torch (close to, not bit-equal with, llama.cpp)",
                        cpu_ops.reason())
        self.rope_dim = 0
        self.rope_cache: torch.Tensor | None = None
        self._plans: dict[tuple[int, ...], object] = {}
        if self.kind == "c":
            self.k.set_num_threads(self.n_threads)
            # the C kernels and ops run their own threads; torch's pool would only fight them
            # for the same cores on the small element-wise ops that remain
            torch.set_num_threads(1)

    def prepare(self, cfg, max_pos: int) -> None:
        """Rope table [max_pos, rope_dim] as interleaved (cos, sin), computed as ggml does."""
        from ..model import rope_tables

        r = cfg.rope
        self.rope_dim, self.neox = r.dim, r.neox
        self.rope_cache = torch.empty(max_pos, r.dim, dtype=torch.float32)
        if self.ops is not None:
            ext, (c0, c1) = (1.0, r.yarn_corr_dims()) if r.uses_yarn else (0.0, (0.0, 0.0))
            self.ops.ggrun_rope_cache(self.rope_cache.data_ptr(), max_pos, r.dim, r.freq_base, r.freq_scale,
                                      ext, r.attn_factor, c0, c1)
        else:
            cos, sin = rope_tables(cfg, max_pos)
            self.rope_cache[:, 0::2], self.rope_cache[:, 1::2] = cos, sin

    # --- weights ---------------------------------------------------------------------
    def embed(self, w: QuantWeight, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N] → rows of the embedding matrix [N, D] f32 (only those rows are decoded)."""
        from ..quants import get_rows

        return get_rows(w.data, w.ggml_type, tokens)

    def _plan(self, ws: tuple[QuantWeight, ...]):
        """One C call for weights sharing an input (fused QKV, gate/up), built once per group."""
        key = tuple(id(w) for w in ws)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self.k.FusedMatmul([(w.data, w.ggml_type) for w in ws])
        return plan

    def matmul(self, w: QuantWeight, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] f32 → x @ W^T [M, N] f32."""
        if self.kind == "c":
            return self._plan((w,))(x.contiguous())
        return self.k.matmul(w.data, w.ggml_type, x.contiguous(), n_threads=self.n_threads)

    def matmul_many(self, ws: list[QuantWeight], x: torch.Tensor) -> list[torch.Tensor]:
        """Several weights applied to the same input (fused QKV, gate/up): x quantized once."""
        x = x.contiguous()
        if self.kind == "c":
            plan = self._plan(tuple(ws))
            return plan.split(plan(x))
        many = getattr(self.k, "matmul_multi", None)
        if many is not None:
            return many([(w.data, w.ggml_type) for w in ws], x, n_threads=self.n_threads)
        return [self.matmul(w, x) for w in ws]

    # --- activations -----------------------------------------------------------------
    def rms_norm(self, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        """x [N, D] f32 → RMSNorm(x)·w [N, D]."""
        if self.ops is None:
            from ..model import rms_norm

            return rms_norm(x, w, eps)
        x = x.contiguous()
        y = torch.empty_like(x)
        self.ops.ggrun_rms_norm(y.data_ptr(), x.data_ptr(), w.data_ptr(), x.shape[0], x.shape[1], eps)
        return y

    def rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x [N, H, hd] f32, pos [N] int32 → rotated x (a new tensor)."""
        if self.ops is None:
            from ..model import apply_rope

            c = self.rope_cache[pos.long()]
            return apply_rope(x, c[:, 0::2], c[:, 1::2], self.rope_dim, self.neox)
        y = x.contiguous().clone()
        p = pos.to(torch.int32).contiguous()
        self.ops.ggrun_rope_apply(y.data_ptr(), p.data_ptr(), y.shape[0], y.shape[1], y.shape[2], self.rope_dim,
                                  self.rope_cache.data_ptr(), int(self.neox))
        return y

    def swiglu(self, g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """silu(g)·u with ggml's vector expf."""
        if self.ops is None:
            return F.silu(g) * u
        g, u = g.contiguous(), u.contiguous()
        y = torch.empty_like(g)
        self.ops.ggrun_swiglu(y.data_ptr(), g.data_ptr(), u.data_ptr(), g.numel())
        return y

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scale: float) -> torch.Tensor:
        """q [n, H, hd] f32 for positions start..start+n-1; k, v [T, Hkv, R] cache storage (T = start+n):
        f16, f32 (attended as f16, as llama.cpp casts it) or q8_0 blocks (kv_types.py)
        → [n, H, hd] f32, causal: llama.cpp's CPU flash attention, bit for bit (its split of
        long decodes follows the thread count, as llama.cpp's does)."""
        from ..kv_types import attention_operand, ggml_id, type_of

        k, v = attention_operand(k), attention_operand(v)
        if self.ops is None:
            return self.attention_torch(q, k, v, start, scale)
        n, H, hd = q.shape
        q = q.contiguous()
        assert k.is_contiguous() and v.is_contiguous()
        out = torch.empty_like(q)
        self.ops.ggrun_attention_kv(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), n, H, k.shape[1], hd,
                                    start, scale, self.n_threads, 256, ggml_id(type_of(k)), ggml_id(type_of(v)))
        return out

    def rope_store_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kc: torch.Tensor,
                          vc: torch.Tensor, pos: torch.Tensor, start: int, scale: float,
                          rot: tuple[int, int] = (0, 0)) -> torch.Tensor | None:
        """RoPE q [n, H, hd] and k [n, Hkv, hd], store k and v [n, Hkv, hd] in the slot's cache kc, vc
        [n_ctx, Hkv, R] at start.. (f16 or q8_0 storage), attend: one C call, the numerics of rope →
        store → attention. ``rot``: (n_rot_k, n_rot_v), the Hadamard rotation of quantized caches
        (kv_types.rotation_sizes), done inside. q, k, v are overwritten. Returns None when the C ops
        are not there or the cache is f32 (the model then runs the ops one by one)."""
        from ..kv_types import ggml_id, type_of

        if self.ops is None or not (kc.is_contiguous() and vc.is_contiguous()):
            return None
        if kc.dtype == torch.float32 or vc.dtype == torch.float32:
            return None
        n, H, hd = q.shape
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out = torch.empty_like(q)
        self.ops.ggrun_rope_store_attend(q.data_ptr(), k.data_ptr(), v.data_ptr(), kc.data_ptr(), vc.data_ptr(),
                                         pos.data_ptr(), n, H, k.shape[1], hd, self.rope_dim, self.rope_cache.data_ptr(),
                                         int(self.neox), start, scale, self.n_threads, 256, out.data_ptr(),
                                         ggml_id(type_of(kc)), ggml_id(type_of(vc)), int(rot[0]), int(rot[1]))
        return out

    @staticmethod
    def attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scale: float) -> torch.Tensor:
        """The torch fallback of ``attention``: f32 softmax, Q rounded to f16 (q8_0 K/V dequantized)."""
        from ..kv_types import to_float

        n, H, hd = q.shape
        T, Hkv, _ = k.shape
        g = H // Hkv
        qf = q.half().float().view(n, Hkv, g, hd)                             # [n, Hkv, g, hd]
        kf, vf = to_float(k), to_float(v)                                     # [T, Hkv, hd]
        s = torch.einsum("nkgd,tkd->kgnt", qf, kf) * scale                    # [Hkv, g, n, T]
        if n > 1:
            qpos = torch.arange(start, start + n)[:, None]                    # [n, 1]
            mask = torch.arange(T)[None, :] > qpos                            # [n, T]
            s = s.masked_fill(mask, float("-inf"))
        p = torch.softmax(s, dim=-1)
        o = torch.einsum("kgnt,tkd->nkgd", p, vf)                             # [n, Hkv, g, hd]
        return o.reshape(n, H, hd)
