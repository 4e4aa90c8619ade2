"""Sampling as llama.cpp's common sampler chain does it.

Order (llama.cpp's default): penalties → top-k → top-p → min-p → temperature → draw.
``temperature <= 0`` keeps only the highest logit (greedy, first index on ties).
Samplers are plain callables built by ``make_sampler``; they work on a float32 logits
vector of the whole vocabulary and never synchronise with a device except to return the id.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .errors import BadArgumentError


@dataclass
class SamplingParams:
    """llama.cpp's sampling settings, with its defaults."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int = -1                      # -1: a random seed
    logit_bias: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.top_p <= 0 or self.top_p > 1:
            raise BadArgumentError(f"top_p = {self.top_p}: must be in (0, 1]")
        if not 0 <= self.min_p <= 1:
            raise BadArgumentError(f"min_p = {self.min_p}: must be in [0, 1]")
        if self.repeat_penalty <= 0:
            raise BadArgumentError(f"repeat_penalty = {self.repeat_penalty}: must be > 0")
        if self.repeat_last_n < -1:
            raise BadArgumentError(f"repeat_last_n = {self.repeat_last_n}: must be ≥ -1")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def apply_penalties(logits: torch.Tensor, history: Sequence[int], p: SamplingParams, n_ctx: int = 0) -> None:
    """llama.cpp's penalties sampler, in place: repeat (divide positive logits, multiply
    negative ones), frequency (× count) and presence, over the last ``repeat_last_n`` tokens."""
    last_n = p.repeat_last_n if p.repeat_last_n >= 0 else n_ctx
    if last_n == 0 or not history:
        return
    if p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0:
        return
    counts = Counter(history[-last_n:])
    ids = torch.tensor(list(counts.keys()), dtype=torch.long)
    cnt = torch.tensor(list(counts.values()), dtype=torch.float32)
    vals = logits[ids]
    vals = torch.where(vals <= 0, vals * p.repeat_penalty, vals / p.repeat_penalty)
    vals = vals - cnt * p.frequency_penalty - (cnt > 0).float() * p.presence_penalty
    logits[ids] = vals


def _filter(logits: torch.Tensor, p: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    """top-k, top-p and min-p as llama.cpp chains them: returns (logits, ids) of the survivors,
    sorted by logit, highest first."""
    k = p.top_k if 0 < p.top_k < logits.numel() else logits.numel()
    vals, ids = torch.topk(logits, k)                        # sorted, descending
    if p.top_p < 1.0:
        probs = torch.softmax(vals, dim=0)
        cum = torch.cumsum(probs, dim=0)
        # keep the smallest prefix whose cumulative probability reaches top_p (at least 1)
        n_keep = int(torch.searchsorted(cum, torch.tensor([p.top_p]), right=False).item()) + 1
        vals, ids = vals[:n_keep], ids[:n_keep]
    if p.min_p > 0.0 and vals.numel() > 1:
        keep = vals >= vals[0] + math.log(p.min_p)
        vals, ids = vals[keep], ids[keep]
    return vals, ids


def greedy_token(logits: torch.Tensor) -> int:
    """argmax of logits [n_vocab] (the first of equal maxima). On the host through numpy, which
    takes ~2 µs for a 32K vocabulary where torch.argmax takes ~30 (a greedy step's host time)."""
    if logits.device.type == "cpu":
        return int(logits.numpy().argmax())
    return int(torch.argmax(logits).item())


def make_sampler(p: SamplingParams) -> Callable[[torch.Tensor, Sequence[int]], int]:
    """Build a sampler ``(logits [n_vocab] float32, history token ids) -> token id``.

    The sampler owns its random generator, seeded from ``p.seed`` (-1: random), so the
    same seed gives the same tokens for the same logits.
    """
    seed = p.seed if p.seed >= 0 else random.SystemRandom().randrange(2**31)
    gen = torch.Generator().manual_seed(seed)

    def sample(logits: torch.Tensor, history: Sequence[int]) -> int:
        logits = logits.float()
        if p.logit_bias:
            logits = logits.clone()
            for tok, b in p.logit_bias.items():
                logits[tok] += b
        if p.repeat_penalty != 1.0 or p.frequency_penalty or p.presence_penalty:
            logits = logits.clone()
            apply_penalties(logits, history, p)
        if p.greedy:
            return greedy_token(logits)
        vals, ids = _filter(logits, p)
        probs = torch.softmax(vals / p.temperature, dim=0)
        return int(ids[torch.multinomial(probs, 1, generator=gen)].item())

    sample.seed = seed  # type: ignore[attr-defined]
    return sample


def token_logprobs(logits: torch.Tensor, token: int, top_n: int = 0) -> tuple[float, list[tuple[int, float]]]:
    """log-softmax probability of ``token`` and the ``top_n`` most likely (id, logprob)."""
    lp = torch.log_softmax(logits.float(), dim=0)
    top: list[tuple[int, float]] = []
    if top_n > 0:
        v, i = torch.topk(lp, top_n)
        top = list(zip(i.tolist(), v.tolist()))
    return float(lp[token]), top
