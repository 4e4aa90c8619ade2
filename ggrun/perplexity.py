"""``ggrun perplexity``: llama-perplexity's numbers, computed by the ggrun engine.

The method is llama.cpp's (tools/perplexity/perplexity.cpp):

- the whole text is tokenized once, BOS added when the vocab asks for it, special tokens
  not parsed; it is cut into ``len(tokens) // n_ctx`` chunks of ``n_ctx`` tokens;
- each chunk is evaluated from an empty cache, its first token replaced by BOS when the
  vocab adds BOS; only the second half is scored: the logits at positions
  ``n_ctx/2 … n_ctx-2`` against the next token (``n_ctx - 1 - n_ctx/2`` tokens a chunk);
- PPL = exp(mean NLL), printed after each chunk as ``[i]ppl,`` and at the end as
  ``Final estimate: PPL = X +/- Y`` (Y = PPL · standard error of the mean NLL).

KL divergence: ``--kl-divergence-base FILE`` saves, with the perplexity run, the tokens and
each scored position's log-probabilities in llama.cpp's file format (uint16 per token
between the row's max-16 and max logit); ``--kl-divergence`` then evaluates another model
on the tokens of that file and prints llama.cpp's statistics: PPL of both, their ratio,
KLD mean and percentiles, Δp, and how often both models' top token agree. Files from
llama-perplexity and from ggrun are interchangeable.
"""

from __future__ import annotations

import math
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, TextIO

import numpy as np
import torch

from .errors import BadArgumentError, ContextError, GGRunError

MAGIC = b"_logits_"


@dataclass
class PerplexityResult:
    ppl: float
    ppl_err: float
    n_ctx: int
    n_chunks: int
    n_scored: int
    chunk_ppl: list[float] = field(default_factory=list)     # running PPL after each chunk
    nll: np.ndarray | None = None                             # per scored token
    seconds: float = 0.0


@dataclass
class KLDResult:
    n: int
    ppl: float
    ppl_err: float
    ppl_base: float
    ppl_base_err: float
    ln_ratio: float
    ln_ratio_err: float
    kld_mean: float
    kld_err: float
    same_top: float
    same_top_err: float
    rms_dp: float
    kld: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    p_diff: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    nll: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    nll_base: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    top: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    top_base: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))


def tokenize_text(tokenizer, text: str) -> list[int]:
    """common_tokenize(ctx, text, add_special=true, parse_special=false): BOS if the vocab adds it."""
    return list(tokenizer.encode(text, add_bos=None, parse_special=False))


def _bos_for(tokenizer) -> int | None:
    if getattr(tokenizer, "add_bos", False):
        if tokenizer.bos_id is None:
            raise GGRunError("the vocab adds BOS but has no BOS token")
        return int(tokenizer.bos_id)
    return None


def _nll_rows(logits: torch.Tensor, targets: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """-log softmax(logits)[target] per row as llama.cpp: f32 exp of (logit - max), summed in f64.
    Returns (nll float64, argmax int64)."""
    logits = logits.float()
    mx, arg = logits.max(dim=-1)
    s = (logits - mx[:, None]).exp().double().sum(dim=-1)
    lt = logits.gather(1, targets[:, None]).squeeze(1)
    nll = -((lt - mx).double() - s.log())
    return nll.numpy(), arg.numpy()


def encode_log_probs(logits: torch.Tensor) -> np.ndarray:
    """llama-perplexity's saved row per position: 2 floats (scale, min log-prob) then one uint16 per token.

    (rows, n_vocab) → (rows, nv) uint16 with nv = 2·⌈n_vocab/2⌉ + 4."""
    logits = logits.float()
    n, v = logits.shape
    nv = 2 * ((v + 1) // 2) + 4
    mx = logits.max(dim=-1).values
    mn = torch.maximum(logits.min(dim=-1).values, mx - 16)
    s = (logits - mx[:, None]).exp().double().sum(dim=-1)
    log_sum_exp = s.log().float()
    min_log_prob = (mn - mx - log_sum_exp).float()
    scale = ((mx - mn) / torch.tensor(65535.0)).float()
    out = np.zeros((n, nv), np.uint16)
    head = torch.stack([scale, min_log_prob], dim=1).numpy().astype("<f4")
    out[:, :4] = head.view("<u2").reshape(n, 4)
    ok = scale != 0
    inv = torch.where(ok, 1.0 / torch.where(ok, scale, torch.ones_like(scale)), torch.zeros_like(scale))
    q = torch.round(inv[:, None] * (logits - mn[:, None]))         # ggml's nearest_int: round half to even
    q = torch.where((logits > mn[:, None]) & ok[:, None], q, torch.zeros_like(q))
    out[:, 4:4 + v] = q.clamp(0, 65535).to(torch.int32).numpy().astype(np.uint16)
    return out


def decode_log_probs(rows: np.ndarray, n_vocab: int) -> np.ndarray:
    """Saved rows → (rows, n_vocab) float32 log-probabilities (as llama.cpp reads them back)."""
    head = np.ascontiguousarray(rows[:, :4]).view("<f4")            # (rows, 2)
    scale, mlp = head[:, 0:1], head[:, 1:2]
    return (scale * rows[:, 4:4 + n_vocab].astype(np.float32) + mlp).astype(np.float32)


class _Out:
    def __init__(self, stream: TextIO | None):
        self.s = stream

    def __call__(self, text: str, end: str = "\n") -> None:
        if self.s is not None:
            self.s.write(text + end)
            self.s.flush()


def perplexity(engine, tokens: Sequence[int], n_ctx: int, n_chunks: int = -1, kld_base_out: str | None = None,
               out: TextIO | None = sys.stdout, progress: Callable[[int, int], None] | None = None) -> PerplexityResult:
    """llama-perplexity over ``tokens`` (already tokenized with BOS handling) in chunks of ``n_ctx``."""
    t0 = time.perf_counter()
    say = _Out(out)
    tokens = list(tokens)
    if n_ctx <= 1:
        raise BadArgumentError(f"-c {n_ctx}: the perplexity context must be > 1")
    if n_ctx > engine.n_ctx:
        raise ContextError(f"-c {n_ctx} is larger than the engine's context {engine.n_ctx}")
    if len(tokens) < 2 * n_ctx:
        raise ContextError(f"you need at least {2 * n_ctx} tokens to evaluate perplexity with a context of {n_ctx}; "
                           f"the text tokenizes to only {len(tokens)} tokens")
    n_chunk_max = len(tokens) // n_ctx
    n_chunk = n_chunk_max if n_chunks < 0 else min(n_chunks, n_chunk_max)
    bos = _bos_for(engine.tokenizer)
    first = n_ctx // 2
    n_vocab = engine.cfg.n_vocab
    say(f"perplexity: calculating perplexity over {n_chunk} chunks, n_ctx={n_ctx}, n_tokens={len(tokens)}")
    fout = None
    if kld_base_out:
        try:
            fout = open(kld_base_out, "wb")
            fout.write(MAGIC + struct.pack("<iii", n_ctx, n_vocab, n_chunk))
            fout.write(np.asarray(tokens[:n_chunk * n_ctx], dtype="<i4").tobytes())
        except OSError as e:
            raise GGRunError(f"--kl-divergence-base {kld_base_out}: {e.strerror}") from None
    nlls, ppls = [], []
    try:
        for i in range(n_chunk):
            start = i * n_ctx
            chunk = tokens[start:start + n_ctx]
            if bos is not None:
                chunk = [bos] + chunk[1:]
            engine.reset()
            logits = engine.eval(chunk, all_logits=True)[first:n_ctx - 1]          # (n_ctx-1-first, n_vocab)
            targets = torch.tensor(tokens[start + first + 1:start + n_ctx], dtype=torch.long)
            nll, _ = _nll_rows(logits, targets)
            nlls.append(nll)
            if fout is not None:
                fout.write(encode_log_probs(logits).astype("<u2").tobytes())
            allnll = np.concatenate(nlls)
            ppls.append(math.exp(allnll.mean()))
            say(f"[{i + 1}]{ppls[-1]:.4f},", end="")
            if progress:
                progress(i + 1, n_chunk)
        say("")
    finally:
        engine.reset()
        if fout is not None:
            fout.close()
    allnll = np.concatenate(nlls)
    count = allnll.size
    mean = allnll.mean()
    var = (allnll ** 2).mean() - mean * mean
    ppl = math.exp(mean)
    err = math.sqrt(var / (count - 1)) * ppl if var > 0 and count > 1 else float("nan")
    say(f"Final estimate: PPL = {ppl:.4f} +/- {err:.5f}")
    return PerplexityResult(ppl, err, n_ctx, n_chunk, count, ppls, allnll, time.perf_counter() - t0)


def read_kld_base(path: str) -> tuple[int, int, int, np.ndarray, np.memmap]:
    """(n_ctx, n_vocab, n_chunk, tokens, rows memmap (n_chunk·(n_ctx-1-n_ctx/2), nv) uint16) of a saved base."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError as e:
        raise GGRunError(f"--kl-divergence-base {path}: {e.strerror}") from None
    if len(head) < 20 or head[:8] != MAGIC:
        raise GGRunError(f"{path} does not look like a file of log-probabilities (llama-perplexity --kl-divergence-base)")
    n_ctx, n_vocab, n_chunk = struct.unpack("<iii", head[8:])
    if n_ctx <= 1 or n_vocab <= 0 or n_chunk <= 0:
        raise GGRunError(f"{path}: bad header (n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk})")
    nv = 2 * ((n_vocab + 1) // 2) + 4
    n_rows = n_chunk * (n_ctx - 1 - n_ctx // 2)
    tok_off = 20
    rows_off = tok_off + 4 * n_ctx * n_chunk
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    if mm.size < rows_off + 2 * nv * n_rows:
        raise GGRunError(f"{path}: truncated ({mm.size} bytes, the header promises {rows_off + 2 * nv * n_rows})")
    tokens = np.frombuffer(mm[tok_off:rows_off].tobytes(), "<i4")
    rows = mm[rows_off:rows_off + 2 * nv * n_rows].view("<u2").reshape(n_rows, nv)
    return n_ctx, n_vocab, n_chunk, tokens, rows


def _mean_unc(s: float, s2: float, n: int) -> tuple[float, float]:
    if n < 1:
        return 0.0, 0.0
    f = s / n
    df = s2 / n - f * f
    return f, (math.sqrt(df / (n - 1)) if df > 0 and n > 10 else 0.0)


def _cov(a: float, b: float, ab: float, n: int) -> float:
    if n < 10:
        return 0.0
    return (ab / n - (a / n) * (b / n)) / (n - 1)


def _percentile(v: np.ndarray, fr: float) -> float:
    if fr <= 0:
        return float(v[0])
    if fr >= 1:
        return float(v[-1])
    p = fr * (len(v) - 1)
    ip = int(p)
    p -= ip
    return float((1 - p) * v[ip] + p * v[min(ip + 1, len(v) - 1)])


def kl_divergence(engine, base_path: str, n_chunks: int = -1, out: TextIO | None = sys.stdout,
                  progress: Callable[[int, int], None] | None = None) -> KLDResult:
    """Evaluate ``engine`` on the tokens of a saved base and compare with its log-probabilities."""
    say = _Out(out)
    n_ctx, n_vocab, n_chunk, tokens, rows = read_kld_base(base_path)
    if n_vocab != engine.cfg.n_vocab:
        raise BadArgumentError(f"{base_path}: inconsistent vocabulary ({n_vocab} in the file, {engine.cfg.n_vocab} in the model)")
    if n_ctx > engine.n_ctx:
        raise ContextError(f"{base_path} was computed with -c {n_ctx}, larger than the context {engine.n_ctx}: increase -c")
    if n_chunks >= 0:
        n_chunk = min(n_chunk, n_chunks)
    bos = _bos_for(engine.tokenizer)
    first = n_ctx // 2
    per = n_ctx - 1 - first
    acc = dict(nll=[], nll_base=[], kld=[], p_diff=[], top=[], top_base=[])
    say(f"kl_divergence: computing over {n_chunk} chunks, n_ctx={n_ctx}")
    say("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p")
    try:
        for i in range(n_chunk):
            start = i * n_ctx
            chunk = [int(t) for t in tokens[start:start + n_ctx]]
            if bos is not None:
                chunk[0] = bos
            engine.reset()
            logits = engine.eval(chunk, all_logits=True)[first:n_ctx - 1].float()
            targets = torch.tensor(tokens[start + first + 1:start + n_ctx].astype(np.int64))
            base = torch.from_numpy(decode_log_probs(np.asarray(rows[i * per:(i + 1) * per]), n_vocab))
            _chunk_stats(logits, targets, base, acc)
            r = _summary(acc)
            say(f"{i + 1:4d}    {r.ppl:9.4f} ± {r.ppl_err:9.4f}    {r.ln_ratio:10.5f} ± {r.ln_ratio_err:10.5f}    "
                f"{r.kld_mean:10.5f} ± {r.kld_err:10.5f}    {100 * r.rms_dp:6.3f} ± {0.0:6.3f} %    "
                f"{100 * r.same_top:6.3f} ± {100 * r.same_top_err:6.3f} %")
            if progress:
                progress(i + 1, n_chunk)
    finally:
        engine.reset()
    r = _summary(acc)
    _print_final(r, say)
    return r


def _chunk_stats(logits: torch.Tensor, targets: torch.Tensor, base_lp: torch.Tensor, acc: dict) -> None:
    """llama.cpp's per-position KLD statistics (perplexity.cpp, log_softmax with a base row)."""
    mx, imax = logits.max(dim=-1)
    s = (logits - mx[:, None]).exp().double().sum(dim=-1)
    lse = s.log().float()
    lt = logits.gather(1, targets[:, None]).squeeze(1)
    nll = (mx + lse - lt).float()
    nll_base = -base_lp.gather(1, targets[:, None]).squeeze(1)
    top_base = base_lp.argmax(dim=-1)                                # first maximum, as llama.cpp's loop
    logp = logits - (mx + lse)[:, None]
    keep = base_lp > -16.0
    pb = torch.where(keep, base_lp.exp(), torch.zeros_like(base_lp))
    kld = (pb.double() * torch.where(keep, base_lp - logp, torch.zeros_like(base_lp)).double()).sum(dim=-1)
    p_diff = torch.exp(-nll) - torch.exp(-nll_base)
    acc["nll"].append(nll.double().numpy())
    acc["nll_base"].append(nll_base.double().numpy())
    acc["kld"].append(kld.numpy())
    acc["p_diff"].append(p_diff.double().numpy())
    acc["top"].append(imax.numpy())
    acc["top_base"].append(top_base.numpy())


def _summary(acc: dict) -> KLDResult:
    nll = np.concatenate(acc["nll"])
    nb = np.concatenate(acc["nll_base"])
    kld = np.concatenate(acc["kld"])
    pd = np.concatenate(acc["p_diff"])
    top, topb = np.concatenate(acc["top"]), np.concatenate(acc["top_base"])
    n = nll.size
    lp, lpe = _mean_unc(nll.sum(), (nll ** 2).sum(), n)
    lb, lbe = _mean_unc(nb.sum(), (nb ** 2).sum(), n)
    cov = _cov(nll.sum(), nb.sum(), (nll * nb).sum(), n)
    ratio_unc = math.sqrt(max(lpe * lpe + lbe * lbe - 2 * cov, 0.0))
    k, ke = _mean_unc(kld.sum(), (kld ** 2).sum(), n)
    mse, _ = _mean_unc((pd ** 2).sum(), (pd ** 4).sum(), n)
    same = float((top == topb).mean())
    same_err = math.sqrt(same * (1 - same) / (n - 1)) if n > 1 else 0.0
    return KLDResult(n, math.exp(lp), math.exp(lp) * lpe, math.exp(lb), math.exp(lb) * lbe, lp - lb, ratio_unc,
                     k, ke, same, same_err, math.sqrt(mse), kld, pd, nll, nb, top, topb)


def _print_final(r: KLDResult, say: _Out) -> None:
    say("")
    if r.n < 100:
        return                       # llama.cpp prints no statistics on so few values
    kv = np.sort(r.kld)
    pv = np.sort(r.p_diff)
    say("====== Perplexity statistics ======")
    say(f"Mean PPL(Q)                   : {r.ppl:10.6f} ± {r.ppl_err:10.6f}")
    say(f"Mean PPL(base)                : {r.ppl_base:10.6f} ± {r.ppl_base_err:10.6f}")
    say(f"Mean ln(PPL(Q)/PPL(base))     : {r.ln_ratio:10.6f} ± {r.ln_ratio_err:10.6f}")
    say(f"Mean PPL(Q)/PPL(base)         : {math.exp(r.ln_ratio):10.6f} ± {math.exp(r.ln_ratio) * r.ln_ratio_err:10.6f}")
    say(f"Mean PPL(Q)-PPL(base)         : {r.ppl - r.ppl_base:10.6f}")
    say("")
    say("====== KL divergence statistics ======")
    say(f"Mean    KLD: {r.kld_mean:10.6f} ± {r.kld_err:10.6f}")
    say(f"Maximum KLD: {kv[-1]:10.6f}")
    for fr, lab in ((0.999, "99.9%"), (0.99, "99.0%"), (0.95, "95.0%"), (0.90, "90.0%")):
        say(f"{lab}   KLD: {_percentile(kv, fr):10.6f}")
    say(f"Median  KLD: {float(np.median(kv)):10.6f}")
    for fr, lab in ((0.10, "10.0%"), (0.05, " 5.0%"), (0.01, " 1.0%"), (0.001, " 0.1%")):
        say(f"{lab}   KLD: {_percentile(kv, fr):10.6f}")
    say(f"Minimum KLD: {kv[0]:10.6f}")
    say("")
    say("====== Token probability statistics ======")
    say(f"Mean    Δp: {100 * pv.mean():6.3f} %")
    say(f"Maximum Δp: {100 * pv[-1]:6.3f}%")
    say(f"Median  Δp: {100 * float(np.median(pv)):6.3f}%")
    say(f"Minimum Δp: {100 * pv[0]:6.3f}%")
    say(f"RMS Δp    : {100 * r.rms_dp:6.3f} %")
    say(f"Same top p: {100 * r.same_top:6.3f} ± {100 * r.same_top_err:5.3f} %")
