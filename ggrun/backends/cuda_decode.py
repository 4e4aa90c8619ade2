"""Batch-1 decode steps and prompt prefills of a model that lies whole on one GPU, replayed
from CUDA graphs.

``GraphPrefill`` is ``LlamaModel.fast_prefill``: a prompt evaluated from position 0 runs the
eager forward captured once per size bucket (powers of two from 64; the prompt is padded to
its bucket with token 0 — causal attention keeps the padding from touching the real tokens,
whose K/V and last logits are what the eager forward gives; the padding's K/V lands past the
prompt, where the next steps overwrite it before anything attends to it). Replaying the graph
removes the ~50 Python-launched kernels per layer that make an eager prefill CPU-bound on a
fast GPU.

``GraphSteps`` is what ``LlamaModel.forward`` calls for a one-token step of one sequence
(``LlamaModel.fast_decode``): it keeps a ``GraphDecoder`` per KV slot of the engine's own
cache, captured once, and replays it. The logits come back as the eager forward's would (on
the device); the engine copies them to the host, where its sampler reads them: one host sync
per token. Prefill, batches of several
sequences and anything the graph can't run stay on the eager forward.
"""

from __future__ import annotations

import torch

from ..kernels import layout
from .cuda import GraphDecoder, cuda_device, prepare_stacks, to_device


def graph_ready(cfg, weights, device) -> bool:
    """Whether ``GraphDecoder`` can run this model: every matrix in a quantized layout
    the matvec kernels take, and full-width RoPE."""
    if cfg.rope.dim != cfg.head_dim:
        return False
    mats = [weights.token_embd, weights.output]
    for L in weights.layers:
        mats += [L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down]
    return all(isinstance(to_device(w, device), layout.Packed) for w in mats)


class GraphSteps:
    """One CUDA graph per (cache, slot): decode a token at a position, return its logits."""

    def __init__(self, cfg, weights, device):
        self.cfg, self.weights = cfg, weights
        self.device = cuda_device(device)
        self.decoders: dict[tuple[int, int], tuple[object, GraphDecoder]] = {}

    def _decoder(self, cache, slot: int) -> GraphDecoder:
        key = (id(cache), slot)
        hit = self.decoders.get(key)
        if hit is not None and hit[0] is cache:
            return hit[1]
        dec = GraphDecoder(self.cfg, self.weights, n_ctx=cache.n_ctx, device=self.device, cache=cache, slot=slot,
                           host_inputs=True)
        # the warm-up before capture runs a real step: let it write the slot's last position,
        # which a later step overwrites before anything attends to it
        dec.reset(0, cache.n_ctx - 1)
        if self.device.type == "cuda":
            dec.capture()
        self.decoders[key] = (cache, dec)
        return dec

    def __call__(self, tokens: torch.Tensor, slot: int, pos: int, cache) -> torch.Tensor:
        """tokens: [1] (host); writes K/V at ``pos`` of ``slot`` → logits [1, n_vocab] f32."""
        if self.device.type != "cuda":                 # Triton's interpreter (tests)
            return self._step(tokens, slot, pos, cache)
        with torch.cuda.device(self.device):          # Triton launches on the current device
            return self._step(tokens, slot, pos, cache)

    def _step(self, tokens: torch.Tensor, slot: int, pos: int, cache) -> torch.Tensor:
        dec = self._decoder(cache, slot)
        dec.reset(int(tokens[0]), pos)                 # pinned host memory the replay copies from
        dec.replay()
        return dec.logits.clone()


class GraphPrefill:
    """One CUDA graph per (cache, slot, bucket): the model's eager forward over a padded prompt
    at positions 0..bucket-1, returning the logits of the prompt's last token."""

    MIN_BUCKET = 64

    def __init__(self, model, max_tokens: int = 4096):
        self.model = model
        self.device = cuda_device(model.device)
        self.max_tokens = max_tokens
        self.graphs: dict[tuple[int, int, int], tuple] = {}
        self.pool = None                                     # one memory pool shared by the captures

    def bucket(self, n: int) -> int:
        b = self.MIN_BUCKET
        while b < n:
            b *= 2
        return b

    def _inputs(self, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The forward's inputs for bucket b: tokens [b] int64, positions 0..b-1 [b] int32 and the
        logits row [1] int64, on the model's device (static buffers of a captured graph)."""
        dev = self.device
        return (torch.zeros(b, dtype=torch.int64, device=dev), torch.arange(b, dtype=torch.int32, device=dev),
                torch.zeros(1, dtype=torch.int64, device=dev))

    def _run(self, slot: int, cache, toks: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        from ..model import SeqChunk

        return self.model._forward(toks, [SeqChunk(slot, 0, toks.shape[0])], cache, rows, positions=pos)

    @staticmethod
    def _fill(tokens: torch.Tensor, toks: torch.Tensor, rows: torch.Tensor) -> None:
        """The prompt into the padded token buffer (token 0 after it), its last row into rows."""
        n = tokens.shape[0]
        toks[:n].copy_(tokens)
        toks[n:].zero_()
        rows.fill_(n - 1)

    def _capture(self, cache, slot: int, b: int):
        inputs = self._inputs(b)
        self._run(slot, cache, *inputs)                      # warm-up: kernels, GEMM plans, buffers
        self.model.be.join_side_stream()
        torch.cuda.synchronize(self.device)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=self.pool):
            out = self._run(slot, cache, *inputs)
            self.model.be.join_side_stream()                 # the side stream rejoins inside the capture
        self.pool = g.pool()
        return cache, g, inputs, out                         # (the inputs: the graph reads them, keep them)

    def __call__(self, tokens: torch.Tensor, slot: int, cache) -> torch.Tensor | None:
        """tokens [n] (host) from position 0 of ``slot`` → logits [1, n_vocab], or None when the
        prompt doesn't fit a bucket (the eager forward runs it)."""
        n = tokens.shape[0]
        b = self.bucket(n)
        if (n < 2 or b > min(self.max_tokens, cache.n_ctx, getattr(self.model, "max_pos", 0))
                or getattr(cache.k, "device", None) != self.device):
            return None
        if self.device.type != "cuda":                       # Triton's interpreter (tests): uncaptured
            toks, pos, rows = self._inputs(b)
            self._fill(tokens, toks, rows)
            return self._run(slot, cache, toks, pos, rows)
        key = (id(cache), slot, b)
        hit = self.graphs.get(key)
        with torch.cuda.device(self.device):
            if hit is None or hit[0] is not cache:
                try:
                    hit = self.graphs[key] = self._capture(cache, slot, b)
                except Exception as e:  # noqa: BLE001 (an op that can't be captured: run eager from now on)
                    import logging

                    logging.getLogger("ggrun").warning("ggrun: prompt graphs off (%s: %s); prompts run eagerly",
                                                       type(e).__name__, str(e)[:200])
                    self.max_tokens = 0
                    torch.cuda.synchronize(self.device)
                    return None
            _, g, (toks, _pos, rows), out = hit
            self._fill(tokens, toks, rows)
            g.replay()
            return out.clone()


def use_graphs(model, weights) -> None:
    """Set up a model that lies whole on one GPU for CUDA graphs: QKV and gate/up stacked now
    (before any capture reads them), one-token steps through ``GraphSteps`` where the matvec
    kernels take every matrix, prompts from position 0 through ``GraphPrefill``."""
    dev = cuda_device(model.device)
    prepare_stacks(weights, dev)
    if graph_ready(model.cfg, weights, dev):
        model.fast_decode = GraphSteps(model.cfg, weights, dev)
    model.fast_prefill = GraphPrefill(model)
