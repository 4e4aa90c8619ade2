"""LangChain models on ggrun: ``GGRunLLM`` (an ``LLM``) and ``ChatGGRun`` (a ``BaseChatModel``).

Needs ``langchain-core`` (``pip install ggrun[langchain]``)::

    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import PromptTemplate
    from ggrun.integrations.langchain import GGRunLLM

    llm = GGRunLLM(model_path="TheBloke/deepseek-coder-6.7B-instruct-GGUF:Q4_K_M", max_tokens=128)
    chain = PromptTemplate.from_template("Write {what} in Python.\\n") | llm | StrOutputParser()
    for piece in chain.stream({"what": "a quick sort"}):
        print(piece, end="", flush=True)

Both stream (``.stream()``, and token callbacks while ``streaming=True``), take ``stop``
strings and pass callbacks through. ``LlamaCpp`` and ``ChatLlamaCpp`` are aliases with the
field names of langchain-community's llama.cpp classes, so those users change one import.
Several models can share one loaded ``ggrun.Llama`` through ``client=``.
"""

from __future__ import annotations

from typing import Any, Iterator

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
    from langchain_core.language_models.llms import LLM
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
    from pydantic import BaseModel, ConfigDict, Field, model_validator
except ImportError as e:  # pragma: no cover - depends on the extra
    from ..errors import GGRunError

    raise GGRunError(f"ggrun.integrations.langchain needs langchain-core ({e.name} is missing): "
                     f"pip install 'ggrun[langchain]'") from None

__all__ = ["GGRunLLM", "ChatGGRun", "LlamaCpp", "ChatLlamaCpp"]


class _GGRunBase(BaseModel):
    """Fields, loading and sampling shared by the LLM and the chat model (a pydantic mixin: each
    class lists it before its LangChain base). Defaults are the LLM's; ``ChatGGRun`` overrides some."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model_path: str | None = None
    client: Any = Field(default=None, exclude=True)
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    n_threads: int | None = None
    n_batch: int = 512
    seed: int = -1
    max_tokens: int | None = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    stop: list[str] | None = None
    streaming: bool = True
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _load_model(self) -> _GGRunBase:
        self._load()
        return self

    def _load(self) -> None:
        if self.client is None:
            from ..api import Llama

            self.client = Llama(self.model_path, n_ctx=self.n_ctx, n_gpu_layers=self.n_gpu_layers,
                                n_threads=self.n_threads, n_batch=self.n_batch, seed=self.seed,
                                chat_format=getattr(self, "chat_format", None), verbose=False,
                                **self.model_kwargs)

    def _sampling(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = dict(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                      min_p=self.min_p, repeat_penalty=self.repeat_penalty,
                      stop=stop if stop is not None else (self.stop or []))
        params.update(kwargs)
        return params

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.client.model_path, **self._sampling(None, {})}

    def get_num_tokens(self, text: str) -> int:
        return len(self.client.tokenize(text, add_bos=False, special=False))


_FIELDS_DOC = """
    model_path: a .gguf file, a folder, a Hub repo (``org/name:QUANT``), or None: the embedded SmolLM2.
    client: an already loaded ``ggrun.Llama`` to use instead of loading ``model_path``.
    n_ctx, n_gpu_layers, n_threads, n_batch, seed: how the model is loaded and sampled (llama.cpp's names).
    max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, stop: generation defaults; a call's
    ``stop`` replaces ``stop``, and other keyword arguments of a call override the rest.
"""


class GGRunLLM(_GGRunBase, LLM):
    __doc__ = "A text-completion LangChain ``LLM`` running a GGUF model with ggrun.\n" + _FIELDS_DOC + """
    streaming: ``invoke`` streams internally, so token callbacks (``on_llm_new_token``) fire.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    echo: bool = False

    @property
    def _llm_type(self) -> str:
        return "ggrun"

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        if self.streaming:
            return "".join(c.text for c in self._stream(prompt, stop, run_manager, **kwargs))
        out = self.client.create_completion(prompt, echo=self.echo, **self._sampling(stop, kwargs))
        return out["choices"][0]["text"]

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        for part in self.client.create_completion(prompt, stream=True, echo=self.echo, **self._sampling(stop, kwargs)):
            choice = part["choices"][0]
            chunk = GenerationChunk(text=choice["text"], generation_info={
                "finish_reason": choice["finish_reason"], "logprobs": choice["logprobs"]})
            if run_manager is not None and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk, verbose=self.verbose)
            yield chunk


def _to_openai(m: BaseMessage) -> dict[str, str]:
    role = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool",
            "function": "tool"}.get(m.type, getattr(m, "role", m.type))
    content = m.content
    if isinstance(content, list):
        content = "".join(p if isinstance(p, str) else p.get("text", "") for p in content
                          if isinstance(p, str) or p.get("type", "text") == "text")
    return {"role": role, "content": content}


class ChatGGRun(_GGRunBase, BaseChatModel):
    __doc__ = "A LangChain chat model running a GGUF model with ggrun, through its chat template.\n" + _FIELDS_DOC + """
    chat_format: a chat template name (None: the model's own).
    streaming: ``invoke`` streams internally, so token callbacks (``on_llm_new_token``) fire.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    chat_format: str | None = None
    temperature: float = 0.2        # the shared fields' defaults are the LLM's: these differ
    streaming: bool = False

    @property
    def _llm_type(self) -> str:
        return "ggrun-chat"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        out = self.client.create_chat_completion([_to_openai(m) for m in messages], **self._sampling(stop, kwargs))
        choice, usage = out["choices"][0], out["usage"]
        msg = AIMessage(content=choice["message"]["content"],
                        response_metadata={"finish_reason": choice["finish_reason"], "model_name": out["model"]},
                        usage_metadata={"input_tokens": usage["prompt_tokens"],
                                        "output_tokens": usage["completion_tokens"],
                                        "total_tokens": usage["total_tokens"]})
        return ChatResult(generations=[ChatGeneration(message=msg,
                                                      generation_info={"finish_reason": choice["finish_reason"]})])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        # langchain-core itself reports each chunk to the callbacks (on_llm_new_token)
        for part in self.client.create_chat_completion([_to_openai(m) for m in messages], stream=True,
                                                       **self._sampling(stop, kwargs)):
            choice = part["choices"][0]
            text = choice["delta"].get("content")
            if choice["finish_reason"]:
                yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={
                    "finish_reason": choice["finish_reason"], "model_name": part["model"]}),
                    generation_info={"finish_reason": choice["finish_reason"]})
            elif text:
                yield ChatGenerationChunk(message=AIMessageChunk(content=text))


class LlamaCpp(GGRunLLM):
    """langchain-community's ``LlamaCpp`` field names and defaults (``n_ctx=512``,
    ``repeat_penalty=1.1``) on ggrun; its other fields are accepted and ignored."""

    n_ctx: int = 512
    repeat_penalty: float = 1.1


class ChatLlamaCpp(ChatGGRun):
    """langchain-community's ``ChatLlamaCpp`` defaults (``n_ctx=512``, ``temperature=0.8``,
    ``repeat_penalty=1.1``) on ggrun."""

    n_ctx: int = 512
    temperature: float = 0.8
    repeat_penalty: float = 1.1
