"""Batch-1 decode steps of a model that lies whole on one GPU, replayed from CUDA graphs.

``GraphSteps`` is what ``LlamaModel.forward`` calls for a one-token step of one sequence
(``LlamaModel.fast_decode``): it keeps a ``GraphDecoder`` per KV slot of the engine's own
cache, captured once, and replays it. The logits come back as the eager forward's would,
so the engine's sampler (temperature, penalties, grammar of the caller) is unchanged; the
one host sync per token is the sampler reading them. Prefill, batches of several
sequences and anything the graph can't run stay on the eager forward.
"""

from __future__ import annotations

import torch

from ..kernels import layout
from .cuda import GraphDecoder, to_device


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
        self.device = torch.device(device)
        self.decoders: dict[tuple[int, int], tuple[object, GraphDecoder]] = {}

    def _decoder(self, cache, slot: int) -> GraphDecoder:
        key = (id(cache), slot)
        hit = self.decoders.get(key)
        if hit is not None and hit[0] is cache:
            return hit[1]
        dec = GraphDecoder(self.cfg, self.weights, n_ctx=cache.n_ctx, device=self.device, cache=cache, slot=slot)
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
        dec.reset(int(tokens[0]), pos)                 # fills on the device: no host sync
        if dec.graph is not None:
            dec.graph.replay()
        else:
            dec.step()
        return dec.logits.clone()
