"""Generation: prefill → decode loop over a batched KV cache, as a stream of events.

``Engine.generate`` yields ``Event``s: one per generated token (id, text piece, logprob)
and a last one with the finish reason and the timings. The CLI, the Python APIs and the
server all consume this same stream. Each sequence lives in a KV slot; a new prompt that
starts with what a slot already holds only evaluates the new tokens.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from .errors import ContextError
from .model import KVCache, LlamaModel, SeqChunk
from .sampling import SamplingParams, make_sampler, token_logprobs


@dataclass
class Timings:
    """Wall-clock figures of one generation, llama.cpp's llama_perf fields."""

    load_ms: float = 0.0
    prompt_n: int = 0
    prompt_ms: float = 0.0
    gen_n: int = 0
    gen_ms: float = 0.0
    sample_n: int = 0
    sample_ms: float = 0.0
    cached_n: int = 0          # prompt tokens found in the KV cache, not evaluated

    @property
    def prompt_tps(self) -> float:
        return self.prompt_n / self.prompt_ms * 1e3 if self.prompt_ms else 0.0

    @property
    def gen_tps(self) -> float:
        return self.gen_n / self.gen_ms * 1e3 if self.gen_ms else 0.0

    def report(self) -> str:
        """The timing lines llama.cpp prints at the end of a run."""

        def per(ms: float, n: int) -> str:
            return f"({ms / n if n else 0:8.2f} ms per token, {n / ms * 1e3 if ms else 0:8.2f} tokens per second)"

        total_ms = self.prompt_ms + self.gen_ms + self.sample_ms
        lines = [
            f"ggrun_perf_sampler_print:    sampling time = {self.sample_ms:10.2f} ms / {self.sample_n:5d} runs   {per(self.sample_ms, self.sample_n)}",
            f"ggrun_perf_context_print:        load time = {self.load_ms:10.2f} ms",
            f"ggrun_perf_context_print: prompt eval time = {self.prompt_ms:10.2f} ms / {self.prompt_n:5d} tokens {per(self.prompt_ms, self.prompt_n)}",
            f"ggrun_perf_context_print:        eval time = {self.gen_ms:10.2f} ms / {self.gen_n:5d} runs   {per(self.gen_ms, self.gen_n)}",
            f"ggrun_perf_context_print:       total time = {total_ms:10.2f} ms / {self.prompt_n + self.gen_n:5d} tokens",
        ]
        if self.cached_n:
            lines.insert(2, f"ggrun_perf_context_print:    cached prompt = {self.cached_n:5d} tokens (not evaluated)")
        return "\n".join(lines)


@dataclass
class Event:
    """One step of a generation. ``token`` is None on the final event, which carries
    ``finish_reason`` ('stop': end of generation or a stop string; 'length': -n or the
    context ran out) and ``timings``. ``text`` is the new text (may be '' while a
    multi-byte character or a possible stop string is held back)."""

    token: int | None
    text: str
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None
    finish_reason: str | None = None
    timings: Timings | None = None


class _StopMatcher:
    """Holds back text that may be the start of a stop string."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Add text; return (text safe to emit, whether a stop string matched)."""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        for s in self.stops:
            i = self.pending.find(s)
            if i >= 0:
                out = self.pending[:i]
                self.pending = ""
                return out, True
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


_PINNED = threading.local()     # per thread (engines may generate in several): (shape, dtype) → pinned buffer
PINNED_MAX = 1 << 20            # bytes: logits of one token or a few go through pinned memory


def _host(t: torch.Tensor) -> torch.Tensor:
    """t on the CPU (a device tensor is copied, which waits for the work that computes it). Small
    tensors (a step's logits) go through a pinned buffer: one direct copy instead of a staged one."""
    if t.device.type == "cpu":
        return t
    nbytes = t.numel() * t.element_size()
    if t.device.type != "cuda" or nbytes > PINNED_MAX:
        return t.cpu()
    bufs = _PINNED.__dict__.setdefault("bufs", {})
    key = (tuple(t.shape), t.dtype)
    buf = bufs.get(key)
    if buf is None:
        buf = bufs[key] = torch.empty(t.shape, dtype=t.dtype).pin_memory()
    buf.copy_(t, non_blocking=True)
    torch.cuda.current_stream(t.device).synchronize()
    return buf.clone()


class Engine:
    """A loaded model ready to generate: weights, tokenizer, backend and KV cache."""

    def __init__(self, model: LlamaModel, tokenizer, n_ctx: int, n_seq: int = 1, n_batch: int = 512,
                 load_ms: float = 0.0, path: str = "", type_k: str = "f16", type_v: str = "f16"):
        """type_k, type_v: the KV cache types (llama.cpp's -ctk/-ctv: f16, f32, q8_0)."""
        self.model = model
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.cache = KVCache(model.cfg, n_ctx, n_seq, device=model.device,
                             layer_devices=getattr(model, "layer_devices", None), type_k=type_k, type_v=type_v)
        self.load_ms = load_ms
        self.path = path

    # --- evaluation ------------------------------------------------------------------
    def reset(self, slot: int = 0) -> None:
        """Forget what slot ``slot`` holds."""
        self.cache.tokens[slot] = []

    def eval(self, tokens: Sequence[int], slot: int = 0, all_logits: bool = False) -> torch.Tensor:
        """Append ``tokens`` to slot ``slot`` and return the logits of the last one
        ([n_vocab] f32), or of every token ([len(tokens), n_vocab]) with ``all_logits``.
        The logits are on the host, as llama.cpp's (its samplers run on the CPU too): the wait
        for a GPU's forward is part of this call (the timings' eval time), and the sampler's
        numbers and random draws are the CPU backend's."""
        held = self.cache.tokens[slot]
        if len(held) + len(tokens) > self.n_ctx:
            raise ContextError(
                f"{len(held) + len(tokens)} tokens don't fit in the context of {self.n_ctx} (-c/--ctx-size)")
        outs = []
        for i in range(0, len(tokens), self.n_batch):
            part = list(tokens[i:i + self.n_batch])
            start = len(held)
            t = torch.tensor(part, dtype=torch.long)
            rows = torch.arange(len(part)) if all_logits else None
            outs.append(self.model.forward(t, [SeqChunk(slot, start, len(part))], self.cache, rows))
            held.extend(part)
        if all_logits:
            return _host(torch.cat(outs))
        return _host(outs[-1][-1])

    def eval_batch(self, per_slot: dict[int, Sequence[int]]) -> dict[int, torch.Tensor]:
        """One forward step for several sequences at once: slot → new tokens.
        Returns slot → logits of its last token. (The server's continuous batching.)"""
        chunks, toks = [], []
        for slot, new in per_slot.items():
            start = len(self.cache.tokens[slot])
            if start + len(new) > self.n_ctx:
                raise ContextError(f"slot {slot}: {start + len(new)} tokens exceed the context of {self.n_ctx}")
            chunks.append(SeqChunk(slot, start, len(new)))
            toks.extend(new)
        logits = self.model.forward(torch.tensor(toks, dtype=torch.long), chunks, self.cache)
        for slot, new in per_slot.items():
            self.cache.tokens[slot].extend(new)
        logits = _host(logits)
        return {slot: logits[i] for i, slot in enumerate(per_slot)}

    def _prefill(self, prompt: Sequence[int], slot: int) -> tuple[torch.Tensor, int]:
        """Evaluate what the slot doesn't hold yet; return (last logits, reused tokens)."""
        held = self.cache.tokens[slot]
        n_same = 0
        for a, b in zip(held, prompt):
            if a != b:
                break
            n_same += 1
        n_same = min(n_same, len(prompt) - 1)          # always evaluate at least one token
        del held[n_same:]
        return self.eval(prompt[n_same:], slot), n_same

    # --- generation ------------------------------------------------------------------
    def generate(self, prompt: Sequence[int], params: SamplingParams | None = None, max_tokens: int = -1,
                 stop: Sequence[str] = (), slot: int = 0, logprobs: int | None = None,
                 ignore_eos: bool = False, stop_ids: Sequence[int] = ()) -> Iterator[Event]:
        """Generate from ``prompt`` (token ids) until an end-of-generation token (or one of
        ``stop_ids``, e.g. a chat template's end of turn), a stop string, ``max_tokens``
        (-1: until the context is full) or the end of the context."""
        params = params or SamplingParams()
        if not prompt:
            raise ContextError("the prompt is empty")
        if len(prompt) >= self.n_ctx:
            raise ContextError(f"the prompt is {len(prompt)} tokens, the context only {self.n_ctx} (-c/--ctx-size)")
        sampler = make_sampler(params)
        tm = Timings(load_ms=self.load_ms)
        t0 = time.perf_counter()
        logits, tm.cached_n = self._prefill(prompt, slot)
        tm.prompt_ms = (time.perf_counter() - t0) * 1e3
        tm.prompt_n = len(prompt) - tm.cached_n
        history = list(prompt)
        stream = self.tokenizer.stream()
        stopper = _StopMatcher(stop)
        finish = "length"
        hit_stop = False
        n_gen = 0
        while True:
            if max_tokens >= 0 and n_gen >= max_tokens:
                break
            ts = time.perf_counter()
            tok = sampler(logits, history)
            lp, top = token_logprobs(logits, tok, logprobs) if logprobs is not None else (None, None)
            tm.sample_ms += (time.perf_counter() - ts) * 1e3
            tm.sample_n += 1
            if (self.tokenizer.is_eog(tok) and not ignore_eos) or tok in stop_ids:
                finish = "stop"
                break
            n_gen += 1
            history.append(tok)
            text, hit = stopper.push(stream.feed(tok))
            if hit:
                if text:
                    yield Event(tok, text, lp, top)
                finish, hit_stop = "stop", True
                break
            yield Event(tok, text, lp, top)
            if (max_tokens >= 0 and n_gen >= max_tokens) or len(self.cache.tokens[slot]) + 1 > self.n_ctx:
                break
            te = time.perf_counter()
            logits = self.eval([tok], slot)
            tm.gen_ms += (time.perf_counter() - te) * 1e3
            tm.gen_n += 1
        tail = "" if hit_stop else stopper.push(stream.flush())[0] + stopper.flush()
        yield Event(None, tail, finish_reason=finish, timings=tm)
