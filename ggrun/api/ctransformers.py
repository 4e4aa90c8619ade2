"""ctransformers' API: ``AutoModelForCausalLM.from_pretrained(...)`` → a callable ``LLM``.

Code written for ctransformers runs with one import changed::

    from ggrun import AutoModelForCausalLM          # was: from ctransformers import …

    llm = AutoModelForCausalLM.from_pretrained("TheBloke/deepseek-coder-6.7B-instruct-GGUF",
                                               model_file="deepseek-coder-6.7b-instruct.Q4_K_M.gguf",
                                               model_type="deepseek", gpu_layers=50)
    print(llm("def quick_sort(arr):", max_new_tokens=64))

Defaults are ctransformers' (``repetition_penalty=1.1``, ``max_new_tokens=256`` …), with two
differences: ``batch_size`` defaults to 512 (ctransformers: 8, a speed knob only) and
``context_length=-1`` means 4096 tokens (or the model's own, if smaller).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ..errors import BadArgumentError
from ._common import (ConflictingArgumentsError, SeedStream, UnsupportedArgumentError, check_model_type,
                      file_metadata, hidden_states, load_engine, sync_slot)

DEFAULT_CONTEXT = 4096


@dataclass
class Config:
    """ctransformers' ``Config``: generation defaults, and how the model is loaded."""

    top_k: int = 40
    top_p: float = 0.95
    temperature: float = 0.8
    repetition_penalty: float = 1.1
    last_n_tokens: int = 64
    seed: int = -1
    batch_size: int = 512
    threads: int = -1
    max_new_tokens: int = 256
    stop: list[str] | None = None
    stream: bool = False
    reset: bool = True
    context_length: int = -1
    gpu_layers: int = 0
    mmap: bool = True
    mlock: bool = False


@dataclass
class AutoConfig:
    """ctransformers' ``AutoConfig``: a ``Config`` and a ``model_type``."""

    config: Config = field(default_factory=Config)
    model_type: str | None = None

    @classmethod
    def from_pretrained(cls, model_path_or_repo_id: str | None = None, model_type: str | None = None,
                        **kwargs: Any) -> "AutoConfig":
        return cls(config=_make_config(None, kwargs), model_type=model_type)


_CONFIG_FIELDS = {f.name for f in dataclasses.fields(Config)}


def _make_config(config: "Config | AutoConfig | dict | None", kwargs: dict[str, Any]) -> Config:
    if isinstance(config, AutoConfig):
        config = config.config
    base = dataclasses.asdict(config) if isinstance(config, Config) else dict(config or {})
    unknown = sorted((set(base) | set(kwargs)) - _CONFIG_FIELDS)
    if unknown:
        raise BadArgumentError(f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                               f"ctransformers' Config has: {', '.join(sorted(_CONFIG_FIELDS))}")
    base.update(kwargs)
    return Config(**base)


class AutoModelForCausalLM:
    """ctransformers' entry point: ``AutoModelForCausalLM.from_pretrained(...)``."""

    @classmethod
    def from_pretrained(cls, model_path_or_repo_id: str | None, *, model_type: str | None = None,
                        model_file: str | None = None, config: "Config | AutoConfig | dict | None" = None,
                        lib: str | None = None, local_files_only: bool = False, revision: str | None = None,
                        hf: bool = False, **kwargs: Any) -> "LLM":
        """Load a GGUF model and return an ``LLM``.

        model_path_or_repo_id: a .gguf file, a folder, a Hub repo (``org/name``, or
        ``org/name:QUANT``), or None for the embedded SmolLM2.
        model_file: in a folder or repo with several GGUF files, the one to load (a glob works).
        model_type: checked against the file's architecture ('llama', 'deepseek', …); optional.
        **kwargs: ``Config`` fields: gpu_layers, context_length, threads, batch_size, and the
        generation defaults (max_new_tokens, temperature, top_k, top_p, repetition_penalty,
        last_n_tokens, seed, stop, stream, reset).
        """
        from ..hub import find_model

        if hf:
            raise UnsupportedArgumentError("hf=True (a transformers model around it) is not supported: use the "
                                           "LLM that from_pretrained returns")
        if isinstance(config, AutoConfig) and config.model_type and model_type and config.model_type != model_type:
            raise ConflictingArgumentsError(f"model_type='{model_type}' and config.model_type="
                                            f"'{config.model_type}' disagree: pass one of them")
        if isinstance(config, AutoConfig) and model_type is None:
            model_type = config.model_type
        cfg = _make_config(config, kwargs)
        path = find_model(model_path_or_repo_id, model_file, revision=revision, local_files_only=local_files_only)
        md = file_metadata(path)
        check_model_type(model_type, path, md)
        n_ctx = cfg.context_length
        if n_ctx is None or n_ctx < 0:
            trained = md.get(f"{md.get('general.architecture')}.context_length")
            n_ctx = min(DEFAULT_CONTEXT, int(trained)) if isinstance(trained, int) and trained > 0 else DEFAULT_CONTEXT
        eng = load_engine(path, n_ctx=n_ctx, n_gpu_layers=cfg.gpu_layers,
                          n_threads=cfg.threads if cfg.threads and cfg.threads > 0 else None,
                          n_batch=max(1, cfg.batch_size))
        return LLM(eng, path, model_type or eng.cfg.arch, cfg)


class LLM:
    """A loaded model with ctransformers' methods. Call it with a prompt to get text."""

    def __init__(self, engine, model_path: str, model_type: str, config: Config):
        self.engine = engine
        self.model_path = model_path
        self.model_type = model_type
        self.config = config
        self._tokens: list[int] = []          # what the model has seen (ctransformers' context)
        self._logits = None
        self._seeds = SeedStream(None)

    # --- model facts ---------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def context_length(self) -> int:
        return self.engine.n_ctx

    @property
    def vocab_size(self) -> int:
        return self.engine.cfg.n_vocab

    @property
    def eos_token_id(self) -> int:
        eos = self.tokenizer.eos_id
        return -1 if eos is None else eos

    @property
    def bos_token_id(self) -> int:
        bos = self.tokenizer.bos_id
        return -1 if bos is None else bos

    @property
    def logits(self) -> list[float]:
        """Logits of the last token evaluated."""
        if self._logits is None:
            raise BadArgumentError("no logits yet: call eval() first")
        return self._logits.float().tolist()

    def is_eos_token(self, token: int) -> bool:
        """True for an end-of-generation token (EOS, EOT, …)."""
        return self.tokenizer.is_eog(token)

    # --- tokens --------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos_token: bool | None = None) -> list[int]:
        """Token ids of ``text`` (BOS as the model's vocab asks, unless add_bos_token says)."""
        return self.tokenizer.encode(text, add_bos=add_bos_token, parse_special=True)

    def detokenize(self, tokens: int | Sequence[int], decode: bool = True) -> str | bytes:
        """Text of token ids (bytes with decode=False)."""
        if isinstance(tokens, int):
            tokens = [tokens]
        raw = b"".join(self.tokenizer.token_to_piece(int(t), special=False) for t in tokens)
        return raw.decode("utf-8", "ignore") if decode else raw

    # --- low level -----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the context."""
        self._tokens = []
        self._logits = None

    def eval(self, tokens: Sequence[int], batch_size: int | None = None, threads: int | None = None) -> None:
        """Append ``tokens`` to the context and evaluate them (``logits`` then holds the last)."""
        if not tokens:
            return
        self._tokens = self._tokens + [int(t) for t in tokens]
        self._logits = sync_slot(self.engine, self._tokens)

    def sample(self, *, top_k: int | None = None, top_p: float | None = None, temperature: float | None = None,
               repetition_penalty: float | None = None, last_n_tokens: int | None = None,
               seed: int | None = None) -> int:
        """Draw the next token from the last logits (doesn't evaluate it)."""
        from ..sampling import make_sampler

        if self._logits is None:
            raise BadArgumentError("nothing to sample from: call eval() first")
        p = self._params(top_k, top_p, temperature, repetition_penalty, last_n_tokens, seed)
        return make_sampler(p)(self._logits, self._tokens)

    def prepare_inputs_for_generation(self, tokens: Sequence[int], reset: bool | None = None) -> list[int]:
        """The context a generation starts from: ``tokens`` alone (reset) or appended."""
        reset = self.config.reset if reset is None else reset
        return [int(t) for t in tokens] if reset else self._tokens + [int(t) for t in tokens]

    def _params(self, top_k, top_p, temperature, repetition_penalty, last_n_tokens, seed):
        from ..sampling import SamplingParams

        c = self.config
        g = lambda v, d: d if v is None else v  # noqa: E731
        return SamplingParams(temperature=g(temperature, c.temperature), top_k=g(top_k, c.top_k),
                              top_p=g(top_p, c.top_p), min_p=0.0,
                              repeat_penalty=g(repetition_penalty, c.repetition_penalty),
                              repeat_last_n=g(last_n_tokens, c.last_n_tokens),
                              seed=self._seeds.next(g(seed, c.seed)))

    def _events(self, tokens: Sequence[int], params, max_new_tokens: int, stop: Sequence[str], reset: bool | None):
        context = self.prepare_inputs_for_generation(tokens, reset)
        if not context:
            raise BadArgumentError("the prompt is empty")
        self._tokens = list(context)
        for ev in self.engine.generate(context, params, max_tokens=max_new_tokens, stop=stop):
            if ev.token is not None:
                self._tokens.append(ev.token)
            yield ev

    # --- generation ----------------------------------------------------------------------
    def generate(self, tokens: Sequence[int], *, top_k: int | None = None, top_p: float | None = None,
                 temperature: float | None = None, repetition_penalty: float | None = None,
                 last_n_tokens: int | None = None, seed: int | None = None, batch_size: int | None = None,
                 threads: int | None = None, reset: bool | None = None) -> Iterator[int]:
        """Yield generated token ids until an end-of-generation token (or the context is full)."""
        p = self._params(top_k, top_p, temperature, repetition_penalty, last_n_tokens, seed)
        for ev in self._events(tokens, p, -1, (), reset):
            if ev.token is not None:
                yield ev.token

    def __call__(self, prompt: str, max_new_tokens: int | None = None, top_k: int | None = None,
                 top_p: float | None = None, temperature: float | None = None,
                 repetition_penalty: float | None = None, last_n_tokens: int | None = None,
                 seed: int | None = None, batch_size: int | None = None, threads: int | None = None,
                 stop: str | Sequence[str] | None = None, stream: bool | None = None,
                 reset: bool | None = None) -> str | Iterator[str]:
        """Generate text from ``prompt``: the text (without the prompt, cut before any ``stop``
        string), or with ``stream=True`` an iterator of text pieces."""
        c = self.config
        stop = c.stop if stop is None else stop
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        n = c.max_new_tokens if max_new_tokens is None else max_new_tokens
        p = self._params(top_k, top_p, temperature, repetition_penalty, last_n_tokens, seed)
        events = self._events(self.tokenize(prompt), p, -1 if n is None or n < 0 else n, stops, reset)
        pieces = (ev.text for ev in events if ev.text)
        if c.stream if stream is None else stream:
            return pieces
        return "".join(pieces)

    def embed(self, input: str | Sequence[int], batch_size: int | None = None,
              threads: int | None = None) -> list[float]:
        """An embedding of the input: the final hidden state of its last token."""
        tokens = self.tokenize(input) if isinstance(input, str) else list(input)
        if not tokens:
            raise BadArgumentError("embed: the input is empty")
        return hidden_states(self.engine, tokens)[-1].tolist()

    def __repr__(self) -> str:
        return f"LLM(model_path={self.model_path!r}, model_type={self.model_type!r})"
