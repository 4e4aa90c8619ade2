"""The llama-family forward pass, written top to bottom with a shape on every buffer.

The model knows nothing about files or devices: it gets weights (``LlamaWeights``) and
a backend that does the heavy ops (quantized matmul, attention). Several sequences can
share one forward step: the tokens of every sequence are concatenated (N tokens in
all) and ``chunks`` says which slot of the KV cache and which positions each run of
tokens belongs to.

Numerics follow llama.cpp's CPU path: RMSNorm sums squares in double, RoPE angles are
built by repeated float32 multiplication as ggml's rope cache does, K and V are stored
as f16 (or the -ctk/-ctv type, see kv_types.py), and the backend quantizes activations to
8-bit blocks before each matmul.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import ModelConfig
from .kv_types import fwht
from .weights import LlamaWeights


@dataclass(frozen=True)
class SeqChunk:
    """``n`` consecutive tokens of the sequence in KV slot ``slot``, from position ``start``."""

    slot: int
    start: int
    n: int


class KVCache:
    """K and V for ``n_seq`` sequences of up to ``n_ctx`` positions each.

    k, v: [n_layer, n_seq, n_ctx, n_head_kv, R] in the cache type's storage (kv_types.py):
    f16 (the default, as llama.cpp) or f32 with R = head_dim, q8_0 as uint8 ggml blocks with
    R = head_dim/32·34 (-ctk/-ctv: ``type_k``, ``type_v``; ``dtype`` sets both, the older way).
    Allocated lazily by the OS: untouched positions cost no RAM. With ``layer_devices`` (one
    device per layer, -ngl offload) each layer's part lies on its layer's device: k, v are then
    ``LayerKV`` lists that index like the 5-d tensor.
    """

    def __init__(self, cfg: ModelConfig, n_ctx: int, n_seq: int = 1, dtype: torch.dtype | None = None,
                 device: str | torch.device = "cpu", layer_devices=None, type_k: str = "f16", type_v: str = "f16"):
        from . import kv_types

        if dtype is not None:
            type_k = type_v = kv_types.type_of(torch.empty(0, dtype=dtype))
        self.type_k = kv_types.parse_cache_type(type_k, "-ctk/--cache-type-k")
        self.type_v = kv_types.parse_cache_type(type_v, "-ctv/--cache-type-v")
        devs = [torch.device(d) for d in layer_devices] if layer_devices is not None else []

        def make(type_name: str):
            r, dt = kv_types.storage(type_name, cfg.head_dim)
            shape = (cfg.n_layer, n_seq, n_ctx, cfg.n_head_kv, r)
            if len(set(devs)) > 1:
                return LayerKV([torch.empty(shape[1:], dtype=dt, device=d) for d in devs])
            return torch.empty(shape, dtype=dt, device=devs[0] if devs else device)

        self.k, self.v = make(self.type_k), make(self.type_v)
        # llama.cpp's Hadamard rotation of quantized caches (kv_types.rotation_sizes; 0: none)
        self.n_rot_k, self.n_rot_v = kv_types.rotation_sizes(self.type_k, self.type_v, cfg.head_dim)
        self.n_ctx = n_ctx
        self.n_seq = n_seq
        self.tokens: list[list[int]] = [[] for _ in range(n_seq)]   # what each slot holds

    @property
    def n_bytes(self) -> int:
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def store(self, il: int, slot: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v [n, Hkv, hd] f32 → positions start..start+n-1 of ``slot`` in layer ``il``, in the
        cache's types (f16: RNE; q8_0: ggml's quantize_row_q8_0)."""
        from .kv_types import to_storage

        n = k.shape[0]
        kd, vd = self.k[il, slot], self.v[il, slot]                 # [n_ctx, Hkv, R] views
        kd[start:start + n] = to_storage(k, kd).to(kd.device)
        vd[start:start + n] = to_storage(v, vd).to(vd.device)


class LayerKV:
    """One cache tensor kept as a tensor per layer ([n_seq, n_ctx, Hkv, hd] each, on the layer's
    device) that indexes like [n_layer, n_seq, n_ctx, Hkv, hd]: ``t[il, ...]`` is layer il's
    tensor (a view); ``t[a:b, ...]`` gathers layers onto the CPU; assignment scatters back."""

    def __init__(self, layers: list[torch.Tensor]):
        self.layers = layers

    def _split(self, idx):
        idx = idx if isinstance(idx, tuple) else (idx,)
        return idx[0], idx[1:]

    def __getitem__(self, idx):
        i, rest = self._split(idx)
        if isinstance(i, int):
            return self.layers[i][rest]
        return torch.stack([t[rest].cpu() for t in self.layers[i]])

    def __setitem__(self, idx, value) -> None:
        i, rest = self._split(idx)
        if isinstance(i, int):
            t = self.layers[i]
            t[rest] = value.to(t.device) if isinstance(value, torch.Tensor) else value
            return
        for j, t in enumerate(self.layers[i]):
            t[rest] = value[j].to(t.device) if isinstance(value, torch.Tensor) else value

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.layers), *self.layers[0].shape))

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].device

    def numel(self) -> int:
        return sum(t.numel() for t in self.layers)

    def element_size(self) -> int:
        return self.layers[0].element_size()


def offload_plan(n_layer: int, n_gpu_layers: int, cpu_backend, gpu_backends, split=None) -> tuple[list, object]:
    """llama.cpp's -ngl N over one or several GPUs (llama_model::load_tensors, split mode layer).

    The output layer counts as layer ``n_layer``: the last N of the n_layer + 1 layers go to the
    GPUs, so -ngl N holds the output layer and the last N - 1 repeating layers (-1 or N > n_layer:
    everything). Over several GPUs those layers are cut by ``split`` (--tensor-split: one weight
    per GPU, default equal): layer i goes to the first GPU whose cumulative share exceeds
    (i - first) / N. Returns (per-layer backends, output backend)."""
    gpus = list(gpu_backends) if isinstance(gpu_backends, (list, tuple)) else [gpu_backends]
    weights = [float(x) for x in split] if split is not None else [1.0] * len(gpus)
    if len(weights) != len(gpus) or any(x < 0 for x in weights) or sum(weights) <= 0:
        raise ValueError(f"tensor split {weights} does not fit {len(gpus)} GPU(s)")
    import numpy as np

    cum = np.cumsum(np.array(weights, dtype=np.float32), dtype=np.float32)   # float, as llama.cpp
    cum = cum / cum[-1]
    n = n_layer + 1 if n_gpu_layers < 0 else n_gpu_layers
    first = max(n_layer + 1 - n, 0)
    act = min(n, n_layer + 1)

    def place(il: int):
        if il < first or il - first >= act:
            return cpu_backend
        f = np.float32(il - first) / np.float32(act)
        g = next((i for i, c in enumerate(cum) if c > f), len(gpus) - 1)   # std::upper_bound
        return gpus[g]

    return [place(il) for il in range(n_layer)], place(n_layer)


def rope_tables(cfg: ModelConfig, n_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: [n_pos, rope_dim/2] float32, computed exactly as ggml_rope_cache_init.

    theta_i(p) = p · θs^i by repeated float32 multiplication (θs = base^(-2/n_dims)),
    then linear scaling multiplies by freq_scale = 1/factor (positions divided by it).
    """
    r = cfg.rope
    half = r.dim // 2
    theta_scale = torch.tensor(r.freq_base, dtype=torch.float32) ** torch.tensor(-2.0 / r.dim, dtype=torch.float32)
    theta = torch.empty(n_pos, half, dtype=torch.float32)                       # [n_pos, half]
    theta[:, 0] = torch.arange(n_pos, dtype=torch.float32)
    for i in range(1, half):
        theta[:, i] = theta[:, i - 1] * theta_scale
    freq_scale = torch.tensor(r.freq_scale, dtype=torch.float32)
    mscale = r.attn_factor
    interp = freq_scale * theta
    if r.uses_yarn:
        # YaRN: blend interpolated and extrapolated angles by a ramp over the dims
        lo, hi = r.yarn_corr_dims()
        i0 = torch.arange(half, dtype=torch.float32)
        ramp = 1 - torch.clamp((i0 - lo) / max(0.001, hi - lo), 0, 1)
        interp = interp * (1 - ramp) + theta * ramp
        mscale *= 1.0 + 0.1 * math.log(1.0 / r.freq_scale)
    return torch.cos(interp) * mscale, torch.sin(interp) * mscale


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """x: [N, D] f32 → [N, D]; squares summed in double in order (a cumsum is sequential),
    as ggml does. (torch.sqrt on CPU float32 may be 1 ulp off: exact code uses the C op.)"""
    ss = (x * x).double().cumsum(-1)[..., -1:]                  # [N, 1] f64, sequential
    mean = (ss / x.shape[-1]).float()
    return (x * (1.0 / torch.sqrt(mean + eps))) * w


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rope_dim: int, neox: bool) -> torch.Tensor:
    """x: [N, H, hd]; cos, sin: [N, rope_dim/2] → rotated x (dims past rope_dim unchanged)."""
    c, s = cos[:, None, :], sin[:, None, :]                     # [N, 1, half]
    xr = x[..., :rope_dim]
    if neox:
        half = rope_dim // 2
        x0, x1 = xr[..., :half], xr[..., half:]
        out = torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)
    else:  # llama "normal": adjacent pairs (GGUF stores Q/K permuted for this)
        x0, x1 = xr[..., 0::2], xr[..., 1::2]                   # [N, H, half]
        out = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2)
    if rope_dim == x.shape[-1]:
        return out
    return torch.cat([out, x[..., rope_dim:]], dim=-1)


class LlamaModel:
    """Forward pass of a llama-family model over a batch of sequence chunks."""

    def __init__(self, cfg: ModelConfig, weights: LlamaWeights, backend, max_pos: int,
                 layer_backends: list | None = None, output_backend=None):
        """``backend`` runs everything by default; ``layer_backends`` (one per layer) and
        ``output_backend`` move layers and the output projection elsewhere (-ngl offload, see
        ``offload_plan``): the embedding lookup stays on ``backend``, and the activations move
        to the next backend's device where it changes (once per boundary)."""
        self.cfg = cfg
        self.w = weights
        self.be = backend
        self.device = _device(backend)
        assert layer_backends is None or len(layer_backends) == cfg.n_layer
        self.layer_backends = layer_backends
        self.output_backend = output_backend
        self.layer_devices = [_device(b) for b in layer_backends] if layer_backends else [self.device] * cfg.n_layer
        for b in _unique([backend, output_backend, *(layer_backends or [])]):
            b.prepare(cfg, max_pos)                                  # rope tables, scratch
        self.kq_scale = 1.0 / math.sqrt(cfg.head_dim)
        self.max_pos = max_pos
        # (tokens [1], slot, pos, cache) → logits [1, n_vocab]: a faster route for one-token
        # steps of one sequence (CUDA graphs, backends/cuda_decode.py), set by the loader
        self.fast_decode = None
        # (tokens [N], slot, cache) → logits [1, n_vocab] or None: a prompt evaluated from position
        # 0 by a replayed CUDA graph (backends/cuda_decode.py), set by the loader
        self.fast_prefill = None
        devs = {d for d in [*self.layer_devices, self.device, _device(output_backend or backend)] if d.type == "cuda"}
        self.multi_gpu = len(devs) > 1 or any(d.index not in (None, 0) for d in devs)

    def forward(self, tokens: torch.Tensor, chunks: list[SeqChunk], cache: KVCache,
                logits_rows: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: [N] int64, the chunks' tokens back to back. Returns logits
        [len(logits_rows), n_vocab] f32 (default: the last token of each chunk)."""
        cfg, be = self.cfg, self.be
        N = tokens.shape[0]
        if self.fast_decode is not None and N == 1 and len(chunks) == 1 and logits_rows is None:
            return self.fast_decode(tokens, chunks[0].slot, chunks[0].start, cache)
        if self.fast_prefill is not None and N > 1 and len(chunks) == 1 and chunks[0].start == 0 and logits_rows is None:
            out = self.fast_prefill(tokens, chunks[0].slot, cache)
            if out is not None:
                return out
        if not self.multi_gpu:
            return self._forward(tokens, chunks, cache, logits_rows)
        prev = torch.cuda.current_device()                  # Triton launches on the current device
        try:
            return self._forward(tokens, chunks, cache, logits_rows)
        finally:
            torch.cuda.set_device(prev)

    def _forward(self, tokens, chunks, cache, logits_rows, positions: torch.Tensor | None = None):
        """forward's body. ``positions`` [N] int32 on the device and ``logits_rows`` on the device
        keep it free of host-to-device copies (a CUDA graph captures it so)."""
        cfg, be = self.cfg, self.be
        N = tokens.shape[0]
        H, Hkv, hd = cfg.n_head, cfg.n_head_kv, cfg.head_dim
        if positions is None:
            positions = torch.cat([torch.arange(c.start, c.start + c.n, dtype=torch.int32) for c in chunks])
        pos_on: dict[torch.device, torch.Tensor] = {}

        def on(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
            return t if t.device == dev else t.to(dev)

        tokens = tokens.to(self.device)
        x = be.embed(self.w.token_embd, tokens)                                   # [N, D] f32
        for il, L in enumerate(self.w.layers):
            lb = self.layer_backends[il] if self.layer_backends is not None else be
            dev = self.layer_devices[il]
            if self.multi_gpu and dev.type == "cuda":
                torch.cuda.set_device(dev)
            x = on(x, dev)                                                        # a boundary: [N, D] moves
            pos = pos_on.setdefault(dev, on(positions, dev))                     # [N] int32
            h = lb.rms_norm(x, L.attn_norm, cfg.rms_eps)                          # [N, D]
            q, k, v = lb.matmul_many([L.wq, L.wk, L.wv], h)                       # [N, H*hd], [N, Hkv*hd] ×2
            q, k, v = q.view(N, H, hd), k.view(N, Hkv, hd), v.view(N, Hkv, hd)
            fused = getattr(lb, "rope_store_attend", None)
            o = None
            rk, rv = cache.n_rot_k, cache.n_rot_v                                 # quantized caches' rotation
            if fused is not None and len(chunks) == 1:                            # one sequence: one call
                c = chunks[0]
                o = fused(q, k, v, cache.k[il, c.slot], cache.v[il, c.slot], pos, c.start, self.kq_scale,
                          rot=(rk, rv))
            if o is None:
                q = lb.rope(q, pos)                                               # [N, H, hd]
                k = lb.rope(k, pos)                                               # [N, Hkv, hd]
                if rk:
                    q, k = fwht(q, rk), fwht(k, rk)
                if rv:
                    v = fwht(v, rv)
                o = torch.empty(N, H, hd, dtype=torch.float32, device=dev)        # [N, H, hd]
                off = 0
                for c in chunks:
                    end = c.start + c.n
                    cache.store(il, c.slot, c.start, k[off:off + c.n], v[off:off + c.n])  # f32 → cache type
                    o[off:off + c.n] = lb.attention(
                        q[off:off + c.n], cache.k[il, c.slot, :end], cache.v[il, c.slot, :end], c.start, self.kq_scale)
                    off += c.n
                if rv:
                    o = fwht(o, rv)                                               # back from the rotation
            x = x + lb.matmul(L.wo, o.view(N, H * hd))                              # [N, D]
            h = lb.rms_norm(x, L.ffn_norm, cfg.rms_eps)
            g, u = lb.matmul_many([L.w_gate, L.w_up], h)                           # [N, n_ff] ×2
            x = x + lb.matmul(L.w_down, lb.swiglu(g, u))                           # [N, D]

        ob = self.output_backend if self.output_backend is not None else be
        dev = _device(ob)
        if logits_rows is None:
            logits_rows = torch.tensor([c.n for c in chunks]).cumsum(0) - 1
        if self.multi_gpu and dev.type == "cuda":
            torch.cuda.set_device(dev)
        x = on(x, dev)
        logits_rows = logits_rows.to(dev)
        x = ob.rms_norm(x[logits_rows].contiguous(), self.w.output_norm, cfg.rms_eps)  # [R, D]
        return ob.matmul(self.w.output, x)                                         # [R, n_vocab]


def _device(backend) -> torch.device:
    return torch.device(getattr(backend, "device", "cpu"))


def _unique(backends: list) -> list:
    out: list = []
    for b in backends:
        if b is not None and all(b is not o for o in out):
            out.append(b)
    return out
