"""LangChain on ggrun with the real langchain-core: prompt | llm | parser chains, streaming,
token callbacks, stop strings, against SmolLM2."""

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate  # noqa: E402

from ggrun.integrations.langchain import ChatGGRun, GGRunLLM, LlamaCpp  # noqa: E402


class Tokens(BaseCallbackHandler):
    """Collects what on_llm_new_token reports."""

    def __init__(self):
        self.tokens: list[str] = []
        self.ended = 0

    def on_llm_new_token(self, token: str, **kwargs) -> None:
        self.tokens.append(token)

    def on_llm_end(self, response, **kwargs) -> None:
        self.ended += 1


# Greedy runs are compared from an empty KV slot: a prompt found in the cache is evaluated
# in another batch split, and batched and one-token matmuls need not round alike.


@pytest.fixture(scope="module")
def client(smollm2_path):
    from ggrun import Llama

    return Llama(model_path=smollm2_path, n_ctx=256, verbose=False)


def test_chain_with_streaming_callbacks(client):
    llm = GGRunLLM(client=client, max_tokens=6, temperature=0)
    cb = Tokens()
    chain = PromptTemplate.from_template("Q: What is the capital of {country}? A:") | llm | StrOutputParser()
    out = chain.invoke({"country": "France"}, config={"callbacks": [cb]})
    assert isinstance(out, str) and out
    assert len(cb.tokens) >= 2 and "".join(cb.tokens) == out and cb.ended == 1
    client.engine.reset(0)          # the same KV state: greedy gives the same text
    pieces = list(chain.stream({"country": "France"}))
    assert len(pieces) >= 2 and "".join(pieces) == out


def test_llm_stop_and_loading_by_name(smollm2_path, client):
    llm = GGRunLLM(client=client, max_tokens=6, temperature=0, streaming=False)
    full = llm.invoke("Q: What is the capital of France? A:")
    word = full.split()[0]
    client.engine.reset(0)
    cut = llm.invoke("Q: What is the capital of France? A:", stop=[word])
    assert word not in cut and full.startswith(cut)
    assert llm.get_num_tokens("Hello world") == 2
    assert LlamaCpp(model_path=smollm2_path, n_ctx=64, verbose=False).client.n_ctx() == 64    # loads by name


def test_chat_model_chain_stream_and_callbacks(client):
    chat = ChatGGRun(client=client, max_tokens=6, temperature=0, streaming=True)
    prompt = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "Name a {thing}.")])
    chain = prompt | chat | StrOutputParser()
    cb = Tokens()
    out = chain.invoke({"thing": "color"}, config={"callbacks": [cb]})
    assert out and "".join(cb.tokens) == out
    client.engine.reset(0)
    pieces = list(chain.stream({"thing": "color"}))
    assert "".join(pieces) == out


def test_chat_model_messages_and_metadata(client):
    chat = ChatGGRun(client=client, max_tokens=4, temperature=0)
    msg = chat.invoke([SystemMessage("You are terse."), HumanMessage("Hi"), AIMessage("Hello."), HumanMessage("Bye")])
    assert isinstance(msg, AIMessage) and msg.content
    assert msg.response_metadata["finish_reason"] in ("stop", "length")
    assert msg.usage_metadata["output_tokens"] <= 4
    assert msg.usage_metadata["total_tokens"] == msg.usage_metadata["input_tokens"] + msg.usage_metadata["output_tokens"]
