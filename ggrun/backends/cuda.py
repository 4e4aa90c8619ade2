"""CUDA backend: weights stay GGUF blocks on the GPU (a lossless word-aligned re-layout),
Triton kernels do the heavy ops.

- ``CUDABackend``: the CPU backend's interface (embed, matmul, matmul_many, attention,
  swiglu) on CUDA tensors. matmul with M ≤ 8 rows runs the fused integer matvec
  (activations as 8-bit blocks, llama.cpp's MMVQ numerics); more rows dequantize the
  weight to f16 and call cuBLAS (llama.cpp's path for big batches).
- ``GraphDecoder``: one decode token of a llama model as a fixed sequence of kernels over
  static buffers (fused RMSNorm+quantize, fused QKV and gate/up, RoPE+KV-write+attention in
  one kernel, residual adds inside the matvec), captured once in a CUDA graph; greedy
  argmax on the GPU, so ``n`` replays make ``n`` tokens without a host sync.
"""

from __future__ import annotations

import math
import weakref
from functools import partial

import torch
import torch.nn.functional as F

from ..errors import UnsupportedModelError
from ..kernels import layout
from ..kernels.attention import decode_attention, decode_attention_kv
from ..kernels.dequant import dequantize
from ..kernels.greedy import argmax_next
from ..kernels.matvec import MAX_M, matvec_q, matvec_q_pair, pairable
from ..kernels.prefill_ops import rms_norm_f16, swiglu_f16
from ..kernels.quantize_x import QX, empty_qx, quantize_x
from ..weights import QuantWeight

F32, F16, BF16 = 0, 1, 30
# Prefill stacks matrices that share an input (QKV, gate/up) into one GEMM only up to this many
# elements: the f16 buffers of the dequantize-ahead pipeline are sized by the largest matrix
# (33B: QKV 66M stacked, gate+up 275M would not be; 6.7B gate+up 90M is).
PREFILL_STACK_MAX = 1 << 27


def cuda_device(device) -> torch.device:
    """``device`` with its index ('cuda' → 'cuda:N', the current device), so that it compares
    equal to a tensor's ``.device``."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


class Dense:
    """A float weight kept as a torch tensor on the device (f16/bf16/f32 as in the file)."""

    def __init__(self, w: torch.Tensor):
        self.w = w


def to_device(w: QuantWeight, device) -> layout.Packed | Dense:
    """Upload one weight in the kernels' layout (cached in ``w.cache``)."""
    if isinstance(w.cache, (layout.Packed, Dense)):
        return w.cache
    t = int(w.ggml_type)
    data = w.data if isinstance(w.data, torch.Tensor) else torch.from_numpy(__import__("numpy").ascontiguousarray(w.data))
    if layout.supported(t):
        w.cache = layout.pack(data, t, device=device)
    elif t in (F32, F16, BF16):
        dt = {F32: torch.float32, F16: torch.float16, BF16: torch.bfloat16}[t]
        w.cache = Dense(data.to(device).view(dt).reshape(w.n_out, w.n_in))
    else:
        from ..quants import type_name

        raise UnsupportedModelError(f"tensor '{w.name}' has type {type_name(t)}, which the CUDA backend can't run yet")
    return w.cache


class CUDABackend:
    """Runs the model's heavy ops on one CUDA device."""

    name = "CUDA"

    def __init__(self, device: str | torch.device = "cuda"):
        self.device = cuda_device(device)
        self._fused: dict[tuple[int, ...], tuple[layout.Packed, list[layout.Packed]]] = {}
        self._vecs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}   # id(host vector) -> (it, device copy)
        self._pipe: _DequantPipe | None = None
        self.rope_cos: torch.Tensor | None = None
        self.rope_sin: torch.Tensor | None = None

    def prepare(self, cfg, max_pos: int) -> None:
        """RoPE tables [max_pos, rope_dim/2] on the device (computed as ggml does, on the CPU)."""
        from ..model import rope_tables

        cos, sin = rope_tables(cfg, max_pos)
        self.rope_cos, self.rope_sin = cos.to(self.device), sin.to(self.device)
        self.rope_dim, self.neox = cfg.rope.dim, cfg.rope.neox

    # --- weights ---------------------------------------------------------------------
    def upload(self, ws: list[QuantWeight]) -> int:
        """Re-layout every weight onto the device now (else on first use); returns bytes."""
        return sum(_nbytes(to_device(w, self.device)) for w in ws)

    def embed(self, w: QuantWeight, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N] → rows of the embedding matrix [N, D] f32."""
        p = to_device(w, self.device)
        ids = tokens.to(self.device)
        if isinstance(p, Dense):
            return p.w[ids].float()
        return dequantize(p, ids=ids, dtype=torch.float32)

    def _mm(self, p, x: torch.Tensor) -> torch.Tensor:
        if isinstance(p, Dense):
            return (x.to(p.w.dtype) @ p.w.T).float()
        if x.shape[0] <= MAX_M:
            return matvec_q(p, quantize_x(x))
        if self.device.type != "cuda":                                # Triton's interpreter (tests)
            return (x.half() @ dequantize(p).T).float()
        if self._pipe is None:
            self._pipe = _DequantPipe(self.device)
        w, done = self._pipe.take(p)                                  # [N, K] f16, dequantized
        y = (x.half() @ w.T).float()
        done()                                                        # the buffer may be reused now
        return y

    def matmul(self, w: QuantWeight, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] f32 → x @ W^T [M, N] f32."""
        return self._mm(to_device(w, self.device), x.to(self.device).contiguous())

    def matmul_many(self, ws: list[QuantWeight], x: torch.Tensor) -> list[torch.Tensor]:
        """Several weights on one input: stacked into one matrix when their types agree."""
        x = x.to(self.device).contiguous()
        ps = [to_device(w, self.device) for w in ws]
        if not all(isinstance(p, layout.Packed) for p in ps):
            return [self._mm(p, x) for p in ps]
        small = x.shape[0] <= MAX_M
        qx = quantize_x(x) if small else None
        outs: list[torch.Tensor] = []
        for a, b in _groups(ps):
            big = not small and sum(p.n_out for p in ps[a:b]) * ps[a].n_in > PREFILL_STACK_MAX
            if b - a == 1 or big:        # (a stacked prefill matrix would double the f16 buffers)
                outs += [matvec_q(p, qx) if small else self._mm(p, x) for p in ps[a:b]]
                continue
            key = tuple(id(p) for p in ps[a:b])
            if key not in self._fused:
                fused, parts = layout.concat(ps[a:b])
                for w, part in zip(ws[a:b], parts):   # the parts become views: no second copy
                    w.cache = part
                key = tuple(id(p) for p in parts)
                self._fused[key] = (fused, parts)   # the parts held: their ids stay unique
                ps[a:b] = parts
            fused = self._fused[key][0]               # one kernel (matvec) or one GEMM (prefill)
            y = matvec_q(fused, qx) if small else self._mm(fused, x)
            outs += list(torch.split(y, [p.n_out for p in ps[a:b]], dim=1))
        return outs

    # --- activations -----------------------------------------------------------------
    def join_side_stream(self) -> None:
        """Join the prefill pipeline's side stream into the current stream (before a graph
        capture ends, and before or after capturing so no event crosses the capture)."""
        if self._pipe is not None:
            self._pipe.join()

    def _on_device(self, t: torch.Tensor) -> torch.Tensor:
        """A host vector's device copy, made once (a pageable copy per call would sync)."""
        if t.device == self.device:
            return t
        hit = self._vecs.get(id(t))
        if hit is None or hit[0] is not t:
            hit = self._vecs[id(t)] = (t, t.to(self.device))
        return hit[1]

    def rms_norm(self, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        """x [N, D] f32 → RMSNorm(x)·w (f32 sums, as ggml's CUDA backend). A prefill batch
        (N > MAX_M rows) gets it as f16 from one fused kernel: the next GEMM's operand."""
        w = self._on_device(w)
        if x.shape[0] > MAX_M and x.stride(-1) == 1 and w.dtype == torch.float32:
            return rms_norm_f16(x, w.contiguous(), eps)
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x [N, H, hd] f32, pos [N] → rotated x."""
        from ..model import apply_rope

        p = pos.to(self.device).long()
        return apply_rope(x, self.rope_cos[p], self.rope_sin[p], self.rope_dim, self.neox)

    @staticmethod
    def swiglu(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """silu(g)·u; for a prefill batch f16 from one fused kernel (the down GEMM's operand)."""
        if g.shape[0] > MAX_M and g.stride(-1) == 1 and u.stride(-1) == 1:
            return swiglu_f16(g, u)
        return F.silu(g) * u

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scale: float) -> torch.Tensor:
        """q [n, H, hd] f32 at positions start..start+n-1; k, v [T, Hkv, R] cache storage (T = start+n;
        f16, f32, or q8_0 blocks dequantized here) → [n, H, hd] f32, causal; f16 operands as
        llama.cpp's flash attention (its CUDA kernels also widen quantized K/V to f16 for prefill)."""
        from ..kv_types import to_float

        n, H, hd = q.shape
        T, Hkv, _ = k.shape
        dev = self.device
        qh = q.to(dev).half().transpose(0, 1)[None]                            # [1, H, n, hd]
        kh = to_float(k.to(dev), torch.float16).transpose(0, 1)[None]          # [1, Hkv, T, hd]
        vh = to_float(v.to(dev), torch.float16).transpose(0, 1)[None]
        mask, causal = None, False
        if n > 1 and start == 0 and T == n:
            causal = True                                                       # flash attention's own mask
        elif n > 1:
            qpos = torch.arange(start, start + n, device=dev)[:, None]
            mask = torch.arange(T, device=dev)[None, :] <= qpos                 # [n, T] True = attend
        o = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, is_causal=causal, scale=scale,
                                           enable_gqa=Hkv != H)
        return o[0].transpose(0, 1).float()                                     # [n, H, hd]


class _DequantPipe:
    """Prefill weights dequantized to f16 one matrix ahead, on a side stream.

    A GEMM of a prefill batch is compute-bound and the dequantization before it memory-bound,
    so the next matrix's dequantization runs on a second stream into the other of two
    buffers while the current GEMM runs. The next matrix is predicted from the order of the
    previous calls (a forward uses its matrices in the same order every time); a wrong
    prediction only costs the wasted dequantization. The buffers grow to the largest matrix
    seen (2 × its f16 bytes: ≤ 0.6 GB for the 33B shape's ffn matrices).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.side = torch.cuda.Stream(device)
        self.bufs: list[torch.Tensor | None] = [None, None]
        self.ahead: tuple[int, int, torch.cuda.Event] | None = None   # (id(p), buffer, done event)
        self.next_of: dict[int, weakref.ref] = {}   # id(p) → the matrix used after p (not kept alive)
        self.prev: int | None = None
        self.turn = 0

    def _buf(self, i: int, p: layout.Packed) -> torch.Tensor:
        n = p.n_out * p.n_in
        if self.bufs[i] is None or self.bufs[i].numel() < n:
            torch.cuda.synchronize(self.device)                    # nothing may still read the old one
            self.bufs[i] = None
            self.bufs[i] = torch.empty(n, dtype=torch.float16, device=self.device)
        return self.bufs[i][:n].view(p.n_out, p.n_in)

    def take(self, p: layout.Packed):
        """p as f16 [N, K] ready for the current stream, and a callback to run after the
        GEMM that reads it has been enqueued."""
        main = torch.cuda.current_stream(self.device)
        if self.prev is not None:
            self.next_of[self.prev] = weakref.ref(p)
        self.prev = id(p)
        if self.ahead is not None and self.ahead[0] == id(p):
            i, ev = self.ahead[1], self.ahead[2]
            main.wait_event(ev)
            w = self._buf(i, p)
        else:
            if self.ahead is not None:                              # a wrong guess: let it finish
                main.wait_event(self.ahead[2])
            i = self.turn
            w = dequantize(p, out=self._buf(i, p))
        self.ahead = None
        self.turn = i ^ 1
        # everything before this GEMM: the other buffer's last reader (the previous GEMM) is in it
        before = torch.cuda.Event()
        before.record(main)

        def done() -> None:
            ref = self.next_of.get(id(p))
            nxt = ref() if ref is not None else None
            if nxt is None:
                return
            j = i ^ 1
            out = self._buf(j, nxt)
            self.side.wait_event(before)                            # overlaps the GEMM just enqueued
            with torch.cuda.stream(self.side):
                dequantize(nxt, out=out)
                ready = torch.cuda.Event()
                ready.record(self.side)
            self.ahead = (id(nxt), j, ready)
        return w, done

    def join(self) -> None:
        """Make the current stream wait for the side stream's pending work (a CUDA graph's
        capture must end with every forked stream joined) and forget the prediction."""
        if self.ahead is not None:
            torch.cuda.current_stream(self.device).wait_event(self.ahead[2])
        self.ahead = None


def _nbytes(p) -> int:
    return p.n_bytes if isinstance(p, layout.Packed) else p.w.numel() * p.w.element_size()


def _groups(ps: list) -> list[tuple[int, int]]:
    """Runs of consecutive matrices that stack (``layout.stackable``: the same type, width and
    layout): [(start, end), …]."""
    out, a = [], 0
    for i in range(1, len(ps) + 1):
        if i == len(ps) or not layout.stackable(ps[a:i + 1]):
            out.append((a, i))
            a = i
    return out


# GraphDecoder's fused launches: the attention kernel quantizes its output for wo; a layer's Q6_K
# attn_v runs in its q+k launch; the gate/up launch quantizes silu(gate)·up for the down matrix;
# the greedy step's argmax, token write and position advance are one launch
FUSIONS = ("attention_q8", "qkv_pair", "swiglu_q8", "argmax_next")


class GraphDecoder:
    """Greedy batch-1 decode of a llama-family model, one token per CUDA-graph replay.

    The step's launches per layer: RMSNorm+quantize, q/k/v (stacked; a Q6_K attn_v in the same
    launch, ``matvec_q_pair``), RoPE+KV write+attention (quantizing its output for wo), wo (adding
    into the residual), RMSNorm+quantize, gate/up (quantizing silu(gate)·up for down), down: 7,
    where an unfused step takes 9-10 (``fuse``, ``FUSIONS``); then the output norm, the logits and,
    greedy, one launch for the next token and position (``argmax_next``).

    weights: ``LlamaWeights`` (QuantWeight matrices, f32 norm vectors). The KV cache is this
    object's own ([n_layer, n_kv_head, n_ctx, head_dim] f16), or slot ``slot`` of a model.py
    ``KVCache`` on the device (so model.forward can prefill and the graph decode after it).
    """

    def __init__(self, cfg, weights, n_ctx: int, device: str | torch.device = "cuda", cache=None, slot: int = 0,
                 attn_split: int | None = None, fuse=True, host_inputs: bool = False, attn_bt: int | None = None):
        from ..model import rope_tables

        dev = self.device = cuda_device(device)
        self.cfg, self.n_ctx = cfg, n_ctx
        H, Hkv, hd, D, Fd = cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.n_embd, cfg.n_ff
        if cfg.rope.dim != hd:
            raise UnsupportedModelError("GraphDecoder: partial rotary embeddings are not supported yet")
        self.nq, self.nk = H * hd, Hkv * hd
        self.scale = 1.0 / math.sqrt(hd)
        cos, sin = rope_tables(cfg, n_ctx)
        self.cos, self.sin = cos.to(dev).contiguous(), sin.to(dev).contiguous()
        if cache is None:
            k = torch.zeros(cfg.n_layer, Hkv, n_ctx, hd, dtype=torch.float16, device=dev)
            v = torch.zeros_like(k)
            self.k_layers, self.v_layers = list(k), list(v)
        else:  # KVCache.k: [n_layer, n_seq, n_ctx, Hkv, R] → per layer [Hkv, n_ctx, R] views (any -ctk/-ctv type)
            assert cache.k.device == dev and cache.n_ctx >= n_ctx
            self.k_layers = [cache.k[il, slot].transpose(0, 1) for il in range(cfg.n_layer)]
            self.v_layers = [cache.v[il, slot].transpose(0, 1) for il in range(cfg.n_layer)]
        # f16 K and V: the f16 kernel; other types (q8_0, f32) and the Hadamard rotation of
        # quantized caches: decode_attention_kv
        kv_f16 = self.k_layers[0].dtype == self.v_layers[0].dtype == torch.float16
        rot = (cache.n_rot_k, cache.n_rot_v) if cache is not None else (0, 0)
        # attn_split: cache positions per attention split (None: the kernel's plan); attn_bt: per
        # step of the split's loop (None: the kernel's default)
        self.attend = partial(decode_attention, split_t=attn_split, block_t=attn_bt) if kv_f16 else \
            partial(decode_attention_kv, rot=rot, split_t=attn_split)
        self.tok = torch.zeros(1, dtype=torch.int64, device=dev)
        self.pos = torch.zeros(1, dtype=torch.int32, device=dev)
        # host_inputs (GraphSteps: the caller samples each token): the step copies tok and pos from
        # pinned host memory that ``reset`` writes (no kernel launches before a replay) and leaves
        # the greedy argmax out; else ``reset`` fills them on the device and the step advances them
        self.host_inputs = host_inputs and dev.type == "cuda"
        if self.host_inputs:
            self.tok_host = torch.zeros(1, dtype=torch.int64).pin_memory()
            self.pos_host = torch.zeros(1, dtype=torch.int32).pin_memory()
            self.tok_np, self.pos_np = self.tok_host.numpy(), self.pos_host.numpy()   # (writes in ~0.1 µs)
            self.done = torch.cuda.Event()          # recorded after each replay (``replay``)
            self.in_flight = False
        self.x = torch.zeros(1, D, device=dev)
        self.qkv = torch.zeros(1, self.nq + 2 * self.nk, device=dev)
        self.o = torch.zeros(self.nq, device=dev)
        self.gu = torch.zeros(1, 2 * Fd, device=dev)
        self.logits = torch.zeros(1, cfg.n_vocab, device=dev)
        self.qx_d = empty_qx(1, D, dev)
        self.qx_o = empty_qx(1, self.nq, dev)
        # fuse: True (all of FUSIONS), False (none: each step its own launch, for A/B runs) or a set of them
        self.fuse = set(FUSIONS) if fuse is True else set(fuse or ())
        assert self.fuse <= set(FUSIONS), self.fuse
        # the attention kernel quantizes its output itself where heads hold whole 64-value pairs
        self.fuse_o = "attention_q8" in self.fuse and (hd % 64 == 0 or self.qx_o.g.shape[1] == 0)
        self.qx_f = empty_qx(1, Fd, dev)
        self.embd = to_device(weights.token_embd, dev)
        self.out_norm = weights.output_norm.to(dev).float().contiguous()
        self.output = to_device(weights.output, dev)
        self.layers = []
        for L in weights.layers:
            self.layers.append(dict(
                attn_norm=L.attn_norm.to(dev).float().contiguous(), ffn_norm=L.ffn_norm.to(dev).float().contiguous(),
                qkv=_stack([L.wq, L.wk, L.wv], dev), wo=to_device(L.wo, dev), gu=_stack([L.w_gate, L.w_up], dev),
                down=to_device(L.w_down, dev)))
        self.graph: torch.cuda.CUDAGraph | None = None

    def step(self) -> None:
        """One token: embed self.tok at self.pos → self.logits; then tok = argmax, pos += 1 (with
        host inputs: tok and pos come from the pinned host copies, and stay)."""
        cfg, eps = self.cfg, self.cfg.rms_eps
        if self.host_inputs:
            self.tok.copy_(self.tok_host, non_blocking=True)
            self.pos.copy_(self.pos_host, non_blocking=True)
        dequantize(self.embd, ids=self.tok, out=self.x)
        nq, nk, Fd = self.nq, self.nk, cfg.n_ff
        for il, L in enumerate(self.layers):
            quantize_x(self.x, norm_w=L["attn_norm"], eps=eps, out=self.qx_d)
            qkv = L["qkv"]
            if "qkv_pair" in self.fuse and len(qkv) == 2 and pairable(qkv[0][1], qkv[1][1]):   # q+k, Q6_K v
                (a, pa), (b, pb) = qkv
                matvec_q_pair(pa, pb, self.qx_d, self.qkv[:, a:a + pa.n_out], self.qkv[:, b:b + pb.n_out])
            else:
                for a, p in qkv:
                    matvec_q(p, self.qx_d, out=self.qkv[:, a:a + p.n_out])
            q = self.qkv[0, :nq]
            self.attend(q, self.qkv[0, nq:nq + nk], self.qkv[0, nq + nk:], self.cos, self.sin, self.pos,
                        self.k_layers[il], self.v_layers[il], self.scale, neox=cfg.rope.neox, out=self.o,
                        qx=self.qx_o if self.fuse_o else None)
            if not self.fuse_o:
                quantize_x(self.o.view(1, -1), out=self.qx_o)
            matvec_q(L["wo"], self.qx_o, out=self.x, acc=True)
            quantize_x(self.x, norm_w=L["ffn_norm"], eps=eps, out=self.qx_d)
            gu = L["gu"]
            if "swiglu_q8" in self.fuse and len(gu) == 1 and _swiglu_fusable(gu[0][1], Fd):   # in that launch
                matvec_q(gu[0][1], self.qx_d, out=self.gu, swiglu=self.qx_f)
            else:
                for a, p in gu:
                    matvec_q(p, self.qx_d, out=self.gu[:, a:a + p.n_out])
                quantize_x(self.gu[:, :Fd], up=self.gu[:, Fd:], out=self.qx_f)
            matvec_q(L["down"], self.qx_f, out=self.x, acc=True)
        quantize_x(self.x, norm_w=self.out_norm, eps=eps, out=self.qx_d)
        matvec_q(self.output, self.qx_d, out=self.logits)
        if self.host_inputs:
            return
        if "argmax_next" in self.fuse:
            argmax_next(self.logits[0], self.tok, self.pos)
        else:
            self.tok.copy_(self.logits.argmax(-1))
            self.pos.add_(1)

    def capture(self) -> None:
        """Record ``step`` in a CUDA graph (after a warm-up that compiles every kernel).
        The warm-up writes position 0 of the cache: call ``reset`` before use."""
        s = torch.cuda.Stream(self.device)
        s.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(s):
            self.step()
        torch.cuda.current_stream(self.device).wait_stream(s)
        if self.host_inputs:           # the warm-up has read the host inputs before anyone rewrites them
            torch.cuda.synchronize(self.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.step()

    def reset(self, token: int, pos: int = 0) -> None:
        """The next step's token and position. With host inputs: written to pinned memory, after
        the previous replay has read them (its event; in practice it is done already, since the
        caller has read its logits)."""
        if self.host_inputs:
            if self.in_flight:
                self.done.synchronize()
                self.in_flight = False
            self.tok_np[0] = token
            self.pos_np[0] = pos
            return
        self.tok.fill_(token)
        self.pos.fill_(pos)

    def replay(self) -> None:
        """One step: the captured graph (else the eager step), the host inputs' event recorded."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self.step()
        if self.host_inputs:
            self.done.record()
            self.in_flight = True

    def decode(self, n: int) -> None:
        """n greedy tokens (graph replays; no host sync)."""
        assert not self.host_inputs, "a decoder fed from the host takes one token per reset"
        for _ in range(n):
            self.replay()


def _swiglu_fusable(p, n_ff: int) -> bool:
    """Whether the stacked [gate; up] matrix p can quantize silu(gate)·up in its own launch
    (``matvec_q(swiglu=…)``): interleaved Q4_K, n_ff a multiple of 32."""
    return (isinstance(p, layout.Packed) and p.ggml_type == layout.Q4_K and p.il == 32 and p.n_out == 2 * n_ff
            and n_ff % 32 == 0)


def prepare_stacks(weights, device) -> None:
    """Stack every layer's QKV and gate/up matrices now (the decode graph's layout; the parts
    become views). Do it before any CUDA graph is captured: a capture bakes in the addresses of
    the matrices it reads, so a later re-layout would leave it reading freed memory."""
    dev = cuda_device(device)
    for L in weights.layers:
        for group in ([L.wq, L.wk, L.wv], [L.w_gate, L.w_up]):
            if all(isinstance(to_device(w, dev), layout.Packed) for w in group):   # (float weights stay apart)
                _stack(group, dev)


def _stack(ws: list[QuantWeight], dev) -> list[tuple[int, layout.Packed]]:
    """Matrices applied to one input → [(column offset, matrix)], same-type runs stacked; the
    stacked parts' ``cache`` becomes a view of the stack (no second copy on the device)."""
    ps = [to_device(w, dev) for w in ws]
    out, off = [], 0
    for a, b in _groups(ps):
        if b - a == 1:
            p = ps[a]
        else:
            p, parts = layout.concat(ps[a:b])
            for w, part in zip(ws[a:b], parts):
                w.cache = part
        out.append((off, p))
        off += p.n_out
    return out
