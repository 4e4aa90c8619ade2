"""llama-cpp-python's API: ``Llama(model_path, …)`` with OpenAI-shaped completions and chats.

Code written for llama-cpp-python runs with one import changed::

    from ggrun import Llama                         # was: from llama_cpp import Llama

    llm = Llama(model_path="./model.gguf", n_ctx=2048, n_gpu_layers=-1, seed=1337)
    out = llm("Q: Name the planets in the solar system? A: ", max_tokens=32, stop=["Q:", "\\n"], echo=True)
    print(out["choices"][0]["text"])

Defaults are llama-cpp-python's (``n_ctx=512``, ``max_tokens=16`` for completions, chat
``temperature=0.2`` …). Arguments that ggrun doesn't implement (grammars, mirostat, LoRA,
tools) raise ``UnsupportedArgumentError`` when set away from their defaults.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any, Iterator, Sequence

from ..errors import BadArgumentError, ContextError
from ._common import (ConflictingArgumentsError, SeedStream, UnsupportedArgumentError, hidden_states,
                      load_engine, reject_unsupported, sync_slot)

LLAMA_DEFAULT_SEED = 0xFFFFFFFF
POOLING = {-1: None, 0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}

# llama-cpp-python arguments that only tune how llama.cpp runs: accepted, no effect here.
_IGNORED = {"split_mode", "main_gpu", "use_mmap", "use_mlock", "n_ubatch", "n_threads_batch", "logits_all",
            "embedding", "offload_kqv", "flash_attn", "numa", "last_n_tokens_size",
            "no_perf", "rpc_servers", "op_offload", "swa_full", "kv_unified", "spm_infill", "lora_scale",
            "yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow", "yarn_orig_ctx",
            "rope_scaling_type", "mul_mat_q", "f16_kv", "n_gqa", "rms_norm_eps", "low_vram", "tensor_split"}


class Llama:
    """A loaded GGUF model with llama-cpp-python's methods."""

    def __init__(self, model_path: str | None, *, n_gpu_layers: int = 0, seed: int = LLAMA_DEFAULT_SEED,
                 n_ctx: int = 512, n_batch: int = 512, n_threads: int | None = None, pooling_type: int = -1,
                 chat_format: str | None = None, verbose: bool = True, vocab_only: bool = False,
                 kv_overrides: dict | None = None, rope_freq_base: float = 0.0, rope_freq_scale: float = 0.0,
                 lora_base: str | None = None, lora_path: str | None = None, chat_handler: Any = None,
                 draft_model: Any = None, tokenizer: Any = None, type_k: int | str | None = None,
                 type_v: int | str | None = None, **kwargs: Any):
        """Load ``model_path`` (a .gguf file, a folder, ``org/name:QUANT`` on the Hub, or None
        for the embedded SmolLM2).

        n_gpu_layers: layers on the GPU (-1: all). n_ctx: context tokens (0: the model's).
        seed: sampling seed for the calls that don't pass one (0xFFFFFFFF: random).
        chat_format: a chat template name (None: the model's own template).
        pooling_type: for ``embed`` (-1: the model's, 0 none, 1 mean, 2 cls, 3 last).
        verbose: print the load line and each call's timings to stderr.
        type_k, type_v: the KV cache types (llama.cpp's -ctk/-ctv): a ggml type id such as
        llama_cpp.GGML_TYPE_Q8_0 (8) or a name ("f16", "q8_0", "f32"); None: f16.
        """
        from ..hub import find_model

        unknown = sorted(set(kwargs) - _IGNORED)
        if unknown:
            raise BadArgumentError(f"Llama(): unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        reject_unsupported(vocab_only=(vocab_only, False), kv_overrides=(kv_overrides, None),
                           rope_freq_base=(rope_freq_base, 0.0), rope_freq_scale=(rope_freq_scale, 0.0),
                           lora_base=(lora_base, None), lora_path=(lora_path, None), chat_handler=(chat_handler, None),
                           draft_model=(draft_model, None), tokenizer=(tokenizer, None))
        if pooling_type not in POOLING:
            raise BadArgumentError(f"pooling_type={pooling_type}: expected one of {sorted(POOLING)}")
        from ..chat import builtin_template, select_template

        named = builtin_template(chat_format) if chat_format else None     # a bad name fails before loading
        self.verbose = verbose
        self.model_path = find_model(model_path)
        self._eng = load_engine(self.model_path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, n_threads=n_threads,
                                n_batch=n_batch, type_k=type_k, type_v=type_v)
        self._seeds = SeedStream(seed)
        self._seed = seed
        self._tokens: list[int] = []
        md = self._eng.gguf.metadata
        self._pooling = POOLING[pooling_type] or POOLING.get(int(md.get(f"{self._eng.cfg.arch}.pooling_type", 0)), "none")
        self._template = named or select_template(md)
        self.chat_format = chat_format or self._template.name
        if verbose:
            print(f"ggrun: loaded {self.model_path} ({self._eng.cfg.arch}, {self._eng.cfg.n_layer} layers, "
                  f"n_ctx={self._eng.n_ctx}, chat template {self._template.name}) in {self._eng.load_ms:.0f} ms",
                  file=sys.stderr)

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str | None = None, additional_files: Sequence[str] | None = None,
                        local_dir: str | None = None, local_dir_use_symlinks: Any = "auto",
                        cache_dir: str | None = None, **kwargs: Any) -> "Llama":
        """Download ``filename`` (exact, or a glob such as ``*Q4_K_M.gguf``) from the Hub repo
        ``repo_id`` into the Hugging Face cache (or ``local_dir``) and load it. All parts of a
        split model come along; ``repo_id`` may be ``org/name:QUANT`` instead of a filename."""
        from ..hub import HubSpec, hub_download, parse_hub_spec

        spec = parse_hub_spec(repo_id)
        if spec is None or spec.filename:
            raise BadArgumentError(f"repo_id '{repo_id}' is not a Hub repository (org/name)")
        if filename is not None:
            if spec.quant:
                raise ConflictingArgumentsError(f"'{repo_id}' picks quant {spec.quant} and filename '{filename}' "
                                                f"picks a file: pass one of them")
            spec = HubSpec(spec.repo, filename=filename)
        paths = hub_download(spec, cache_dir=cache_dir, local_dir=local_dir)
        for extra in additional_files or ():
            hub_download(HubSpec(spec.repo, filename=extra), cache_dir=cache_dir, local_dir=local_dir)
        return cls(paths[0], **kwargs)

    # --- model facts ---------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF metadata as strings (arrays left out), as llama-cpp-python gives it."""
        return {k: str(v) for k, v in self._eng.gguf.metadata.items() if not isinstance(v, list)}

    def n_ctx(self) -> int:
        return self._eng.n_ctx

    def n_embd(self) -> int:
        return self._eng.cfg.n_embd

    def n_vocab(self) -> int:
        return self._eng.cfg.n_vocab

    def token_bos(self) -> int:
        return -1 if self._eng.tokenizer.bos_id is None else self._eng.tokenizer.bos_id

    def token_eos(self) -> int:
        return -1 if self._eng.tokenizer.eos_id is None else self._eng.tokenizer.eos_id

    @property
    def n_tokens(self) -> int:
        return len(self._tokens)

    @property
    def input_ids(self) -> list[int]:
        return list(self._tokens)

    @property
    def engine(self):
        """The ``ggrun.engine.Engine`` underneath."""
        return self._eng

    # --- tokens --------------------------------------------------------------------------
    def tokenize(self, text: bytes | str, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text`` (bytes or str). add_bos: add BOS if the vocab asks for one.
        special: parse special-token texts such as ``<|im_start|>``."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return self._eng.tokenizer.encode(text, add_bos=None if add_bos else False, parse_special=special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        """The bytes of ``tokens``."""
        return b"".join(self._eng.tokenizer.token_to_piece(int(t), special=special) for t in tokens)

    def _piece(self, token: int) -> str:
        return self._eng.tokenizer.token_to_piece(int(token), special=False).decode("utf-8", "ignore")

    # --- low level -----------------------------------------------------------------------
    def reset(self) -> None:
        self._tokens = []

    def set_seed(self, seed: int) -> None:
        self._seeds = SeedStream(seed)

    def eval(self, tokens: Sequence[int]) -> None:
        """Append ``tokens`` to the context and evaluate them."""
        self._tokens = self._tokens + [int(t) for t in tokens]
        if self._tokens:
            sync_slot(self._eng, self._tokens)

    def generate(self, tokens: Sequence[int], top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 typical_p: float = 1.0, temp: float = 0.80, repeat_penalty: float = 1.0, reset: bool = True,
                 frequency_penalty: float = 0.0, presence_penalty: float = 0.0, seed: int | None = None,
                 **unsupported: Any) -> Iterator[int]:
        """Yield sampled token ids, end-of-generation tokens included, until the caller stops
        (or the context is full)."""
        _reject_sampling(typical_p=typical_p, **unsupported)
        context = [int(t) for t in tokens] if reset else self._tokens + [int(t) for t in tokens]
        p = self._params(temp, top_k, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty, None, seed)
        self._tokens = list(context)
        for ev in self._eng.generate(context, p, max_tokens=-1, ignore_eos=True):
            if ev.token is not None:
                self._tokens.append(ev.token)
                yield ev.token

    def _params(self, temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty,
                logit_bias, seed):
        from ..sampling import SamplingParams

        return SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                              repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                              presence_penalty=presence_penalty,
                              logit_bias={int(k): float(v) for k, v in (logit_bias or {}).items()},
                              seed=self._seeds.next(seed))

    def _run(self, prompt: list[int], params, max_tokens: int | None, stop: Sequence[str], logprobs: int | None,
             stop_ids: set[int] = frozenset()):
        """Engine events for ``prompt``; a token in ``stop_ids`` ends the run as 'stop'."""
        from ..engine import Event

        if len(prompt) >= self._eng.n_ctx:
            raise ContextError(f"Requested tokens ({len(prompt)}) exceed context window of {self._eng.n_ctx}")
        n = -1 if max_tokens is None or max_tokens <= 0 else max_tokens
        self._tokens = list(prompt)
        gen = self._eng.generate(prompt, params, max_tokens=n, stop=list(stop), logprobs=logprobs)
        for ev in gen:
            if ev.token is not None and ev.token in stop_ids:
                gen.close()
                yield Event(None, "", finish_reason="stop")
                return
            if ev.token is not None:
                self._tokens.append(ev.token)
            if ev.finish_reason and self.verbose and ev.timings is not None:
                print(ev.timings.report(), file=sys.stderr)
            yield ev

    def _logprobs_of(self, ev, offset: int) -> tuple[str, float, dict[str, float], int]:
        tok = self._piece(ev.token)
        top = {self._piece(i): float(v) for i, v in (ev.top_logprobs or [])}
        top[tok] = float(ev.logprob)
        return tok, float(ev.logprob), top, offset

    # --- completions ---------------------------------------------------------------------
    def create_completion(self, prompt: str | list[int], suffix: str | None = None, max_tokens: int | None = 16,
                          temperature: float = 0.8, top_p: float = 0.95, min_p: float = 0.05,
                          typical_p: float = 1.0, logprobs: int | None = None, echo: bool = False,
                          stop: str | list[str] | None = None, frequency_penalty: float = 0.0,
                          presence_penalty: float = 0.0, repeat_penalty: float = 1.0, top_k: int = 40,
                          stream: bool = False, seed: int | None = None, model: str | None = None,
                          logit_bias: dict[int, float] | None = None, **unsupported: Any):
        """Complete ``prompt`` (text or token ids): an OpenAI ``text_completion`` dict, or with
        ``stream=True`` an iterator of chunks. ``logprobs=N`` adds each token's log-probability
        and the N most likely alternatives."""
        _reject_sampling(typical_p=typical_p, **unsupported)
        if isinstance(prompt, str):
            prompt_text = prompt
            tokens = self.tokenize(prompt, add_bos=True, special=True) if prompt else []
        else:
            tokens = [int(t) for t in prompt]
            prompt_text = self.detokenize(tokens).decode("utf-8", "ignore")
        if not tokens:
            if self._eng.tokenizer.bos_id is None:
                raise BadArgumentError("the prompt is empty")
            tokens = [self._eng.tokenizer.bos_id]
        if logprobs is not None and (isinstance(logprobs, bool) or logprobs < 0):
            logprobs = 1 if logprobs is True else None
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        params = self._params(temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty,
                              presence_penalty, logit_bias, seed)
        echo_lp = self._prompt_logprobs(tokens, logprobs) if echo and logprobs is not None else None
        head = dict(id=f"cmpl-{uuid.uuid4()}", object="text_completion", created=int(time.time()),
                    model=model or self.model_path)
        events = self._run(tokens, params, max_tokens, stops, logprobs)
        if stream:
            return self._stream_completion(events, head, prompt_text if echo else "", len(prompt_text), logprobs,
                                           echo_lp, suffix)
        text, n_gen, finish, lp = "", 0, "length", None
        if logprobs is not None:
            lp = echo_lp or {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
        for ev in events:
            if ev.token is not None:
                n_gen += 1
                if lp is not None:
                    tok, v, top, off = self._logprobs_of(ev, len(prompt_text) + len(text))
                    for k, x in zip(("tokens", "token_logprobs", "top_logprobs", "text_offset"), (tok, v, top, off)):
                        lp[k].append(x)
            text += ev.text
            if ev.finish_reason:
                finish = ev.finish_reason
        out = (prompt_text if echo else "") + text + (suffix or "")
        return {**head, "choices": [{"text": out, "index": 0, "logprobs": lp, "finish_reason": finish}],
                "usage": {"prompt_tokens": len(tokens), "completion_tokens": n_gen,
                          "total_tokens": len(tokens) + n_gen}}

    __call__ = create_completion

    def _prompt_logprobs(self, tokens: list[int], n: int) -> dict[str, list]:
        """Log-probabilities of the prompt's own tokens (echo=True with logprobs)."""
        import torch

        self._eng.reset(0)
        logits = self._eng.eval(tokens, 0, all_logits=True)                # [N, n_vocab]
        lps = torch.log_softmax(logits.float(), dim=-1)
        out: dict[str, list] = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
        offset = 0
        for i, t in enumerate(tokens):
            piece = self._piece(t)
            out["tokens"].append(piece)
            out["text_offset"].append(offset)
            if i == 0:
                out["token_logprobs"].append(None)
                out["top_logprobs"].append(None)
            else:
                row = lps[i - 1]
                top = {}
                if n > 0:
                    v, ids = torch.topk(row, n)
                    top = {self._piece(j): float(x) for j, x in zip(ids.tolist(), v.tolist())}
                top[piece] = float(row[t])
                out["token_logprobs"].append(float(row[t]))
                out["top_logprobs"].append(top)
            offset += len(piece)
        return out

    def _stream_completion(self, events, head, echo_text, prompt_len, logprobs, echo_lp, suffix):
        def chunk(text, lp=None, finish=None):
            return {**head, "choices": [{"text": text, "index": 0, "logprobs": lp, "finish_reason": finish}]}

        if echo_text:
            yield chunk(echo_text, echo_lp)
        sent = 0
        finish = "length"
        for ev in events:
            if ev.finish_reason:
                finish = ev.finish_reason
            if ev.token is not None and logprobs is not None:
                tok, v, top, off = self._logprobs_of(ev, prompt_len + sent)
                yield chunk(ev.text, {"tokens": [tok], "text_offset": [off], "token_logprobs": [v],
                                      "top_logprobs": [top]})
            elif ev.text:
                yield chunk(ev.text)
            sent += len(ev.text)
        if suffix:
            yield chunk(suffix)
        yield chunk("", None, finish)

    # --- chat ----------------------------------------------------------------------------
    def create_chat_completion(self, messages: list[dict[str, Any]], temperature: float = 0.2, top_p: float = 0.95,
                               top_k: int = 40, min_p: float = 0.05, typical_p: float = 1.0, stream: bool = False,
                               stop: str | list[str] | None = None, seed: int | None = None,
                               response_format: dict | None = None, max_tokens: int | None = None,
                               presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
                               repeat_penalty: float = 1.0, model: str | None = None,
                               logit_bias: dict[int, float] | None = None, logprobs: bool | None = None,
                               top_logprobs: int | None = None, tools: list | None = None,
                               tool_choice: Any = None, functions: list | None = None, function_call: Any = None,
                               **unsupported: Any):
        """Answer a conversation (OpenAI-style ``messages``) through the chat template: an
        OpenAI ``chat.completion`` dict, or with ``stream=True`` an iterator of chunks."""
        from ..chat import normalize_messages, prompt_ids, render_messages, turn_end_stops

        _reject_sampling(typical_p=typical_p, **unsupported)
        reject_unsupported(tools=(tools or None, None), functions=(functions or None, None),
                           function_call=(function_call, None))
        if tool_choice not in (None, "none", "auto"):
            raise UnsupportedArgumentError(f"tool_choice={tool_choice!r} is not supported by ggrun")
        if response_format and response_format.get("type", "text") != "text":
            raise UnsupportedArgumentError(f"response_format={response_format!r} is not supported by ggrun "
                                           f"(constrained JSON output needs grammars)")
        msgs = normalize_messages(messages)
        text = render_messages(self._template, self._eng.tokenizer, msgs, add_generation_prompt=True)
        tokens = prompt_ids(self._eng.tokenizer, text)
        stop_ids, stop_strings = turn_end_stops(self._template, self._eng.tokenizer, self._eng.gguf.metadata)
        stops = ([stop] if isinstance(stop, str) else list(stop or [])) + stop_strings
        n_top = (top_logprobs or 0) if logprobs else None
        params = self._params(temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty,
                              presence_penalty, logit_bias, seed)
        head = dict(id=f"chatcmpl-{uuid.uuid4()}", created=int(time.time()), model=model or self.model_path)
        events = self._run(tokens, params, max_tokens, stops, n_top, stop_ids)
        if stream:
            return self._stream_chat(events, head, n_top)
        content, n_gen, finish, lp = "", 0, "length", [] if n_top is not None else None
        for ev in events:
            if ev.token is not None:
                n_gen += 1
                if lp is not None:
                    lp.append(self._chat_logprob(ev))
            content += ev.text
            if ev.finish_reason:
                finish = ev.finish_reason
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "logprobs": {"content": lp} if lp is not None else None, "finish_reason": finish}],
                "usage": {"prompt_tokens": len(tokens), "completion_tokens": n_gen,
                          "total_tokens": len(tokens) + n_gen}}

    def _chat_logprob(self, ev) -> dict[str, Any]:
        tok = self._piece(ev.token)
        return {"token": tok, "logprob": float(ev.logprob), "bytes": list(tok.encode()),
                "top_logprobs": [{"token": self._piece(i), "logprob": float(v), "bytes": list(self._piece(i).encode())}
                                 for i, v in (ev.top_logprobs or [])]}

    def _stream_chat(self, events, head, n_top):
        def chunk(delta, finish=None, lp=None):
            return {**head, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]}

        yield chunk({"role": "assistant"})
        finish = "length"
        for ev in events:
            if ev.finish_reason:
                finish = ev.finish_reason
            lp = {"content": [self._chat_logprob(ev)]} if ev.token is not None and n_top is not None else None
            if ev.text or lp:
                yield chunk({"content": ev.text}, None, lp)
        yield chunk({}, finish)

    # --- embeddings ----------------------------------------------------------------------
    def embed(self, input: str | list[str], normalize: bool = False, truncate: bool = True,
              return_count: bool = False):
        """Embeddings of a text (or a list of texts): one vector per text with mean/cls/last
        pooling, one per token with pooling 'none' (the default of a causal LM)."""
        import torch

        texts = [input] if isinstance(input, str) else list(input)
        out, count = [], 0
        for t in texts:
            tokens = self.tokenize(t, add_bos=True, special=False)
            if not tokens:
                raise BadArgumentError("embed: an input text is empty")
            if len(tokens) > self._eng.n_ctx:
                if not truncate:
                    raise ContextError(f"embed: {len(tokens)} tokens exceed the context of {self._eng.n_ctx}")
                tokens = tokens[: self._eng.n_ctx]
            count += len(tokens)
            h = hidden_states(self._eng, tokens)                                  # [N, n_embd]
            if self._pooling == "mean":
                h = h.mean(0, keepdim=True)
            elif self._pooling == "cls":
                h = h[:1]
            elif self._pooling in ("last", "rank"):
                h = h[-1:]
            if normalize:
                h = torch.nn.functional.normalize(h, dim=-1)
            vecs = h.tolist()
            out.append(vecs if self._pooling == "none" else vecs[0])
        self._tokens = []
        result = out[0] if isinstance(input, str) else out
        return (result, count) if return_count else result

    def create_embedding(self, input: str | list[str], model: str | None = None) -> dict[str, Any]:
        """OpenAI-shaped embeddings of ``input``."""
        texts = [input] if isinstance(input, str) else list(input)
        data, count = self.embed(texts, return_count=True)
        return {"object": "list", "model": model or self.model_path,
                "data": [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(data)],
                "usage": {"prompt_tokens": count, "total_tokens": count}}

    # --- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Drop the model (its memory goes when nothing else holds it)."""
        self._eng = None

    def __enter__(self) -> "Llama":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Llama(model_path={self.model_path!r}, n_ctx={self._eng.n_ctx if self._eng else 0})"


def _reject_sampling(typical_p: float = 1.0, tfs_z: float = 1.0, mirostat_mode: int = 0, mirostat_tau: float = 5.0,
                     mirostat_eta: float = 0.1, grammar: Any = None, logits_processor: Any = None,
                     stopping_criteria: Any = None, **other: Any) -> None:
    if other:
        raise BadArgumentError(f"unknown argument{'s' if len(other) > 1 else ''} {', '.join(sorted(other))}")
    reject_unsupported(typical_p=(typical_p, 1.0), tfs_z=(tfs_z, 1.0), mirostat_mode=(mirostat_mode, 0),
                       grammar=(grammar, None), logits_processor=(logits_processor, None),
                       stopping_criteria=(stopping_criteria, None))
