"""llama-cpp-python's API on ggrun: the seed's and the README's snippets with only the import
changed, OpenAI-shaped results and chunks, logprobs, embeddings, and bad input."""

import os

import pytest

from api_helpers import CAP, DEEPSEEK_REPO, cap_tokens, hub_offline  # noqa: F401  (fixtures)

import ggrun
from ggrun import Llama

# The seed's llama-cpp-python snippet (TheBloke's model card), verbatim.
SEED_SNIPPET = '''
from llama_cpp import Llama

# Set gpu_layers to the number of layers to offload to GPU. Set to 0 if no GPU acceleration is available on your system.
llm = Llama(
  model_path="./deepseek-coder-6.7b-instruct.Q4_K_M.gguf",  # Download the model file first
  n_ctx=16384,  # The max sequence length to use - note that longer sequence lengths require much more resources
  n_threads=8,            # The number of CPU threads to use, tailor to your system and the resulting performance
  n_gpu_layers=35         # The number of layers to offload to GPU, if you have GPU acceleration available
)

# Simple inference example
output = llm(
  "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer.\\n### Instruction:\\n{prompt}\\n### Response:", # Prompt
  max_tokens=512,  # Generate up to 512 tokens
  stop=["<|EOT|>"],   # Example stop token - not necessarily correct for this specific model! Please check before using.
  echo=True        # Whether to echo the prompt
)

# Chat Completion API

llm = Llama(model_path="./deepseek-coder-6.7b-instruct.Q4_K_M.gguf", chat_format="llama-2")  # Set chat_format according to the model you are using
llm.create_chat_completion(
    messages = [
        {"role": "system", "content": "You are a story writing assistant."},
        {
            "role": "user",
            "content": "Write a story about llamas."
        }
    ]
)
'''

# llama-cpp-python's README: completion, from_pretrained with a glob, chat completion.
README_COMPLETION = '''
from llama_cpp import Llama

llm = Llama(
      model_path="./models/7B/llama-model.gguf",
      # n_gpu_layers=-1, # Uncomment to use GPU acceleration
      # seed=1337, # Uncomment to set a specific seed
      # n_ctx=2048, # Uncomment to increase the context window
)
output = llm(
      "Q: Name the planets in the solar system? A: ", # Prompt
      max_tokens=32, # Generate up to 32 tokens, set to `None` to generate up to the end of the context window
      stop=["Q:", "\\n"], # Stop generating just before the model would generate a new question
      echo=True # Echo the prompt back in the output
) # Generate a completion, can also call create_completion
print(output)
'''

README_FROM_PRETRAINED = '''
llm = Llama.from_pretrained(
    repo_id="Qwen/Qwen2-0.5B-Instruct-GGUF",
    filename="*q8_0.gguf",
    verbose=False
)
'''

README_CHAT = '''
from llama_cpp import Llama
llm = Llama(
      model_path="path/to/llama-2/llama-model.gguf",
      chat_format="llama-2"
)
llm.create_chat_completion(
      messages = [
          {"role": "system", "content": "You are an assistant who perfectly describes images."},
          {
              "role": "user",
              "content": "Describe this image in detail please."
          }
      ]
)
'''


def _run(snippet: str, ns: dict | None = None) -> dict:
    code = snippet.replace("from llama_cpp import", "from ggrun import")
    ns = {} if ns is None else ns
    exec(compile(code, "snippet", "exec"), ns)
    return ns


@pytest.fixture
def model_dir(tmp_path, smollm2_path, monkeypatch):
    """A working folder where the snippets' relative model paths lead to SmolLM2."""
    for rel in ("deepseek-coder-6.7b-instruct.Q4_K_M.gguf", "models/7B/llama-model.gguf",
                "path/to/llama-2/llama-model.gguf"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).symlink_to(smollm2_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_seed_snippet_with_only_the_import_changed(model_dir, cap_tokens, capsys):
    ns = _run(SEED_SNIPPET)
    text = ns["output"]["choices"][0]["text"]
    assert text.startswith("You are an AI programming assistant") and "### Response:" in text
    assert ns["output"]["usage"]["completion_tokens"] >= 1
    print(text)
    chat = ns["llm"].create_chat_completion(messages=[{"role": "user", "content": "Write a story about llamas."}])
    print(chat["choices"][0]["message"]["content"])
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"
    assert ns["llm"].chat_format == "llama-2"
    assert capsys.readouterr().out.strip()


def test_readme_completion_from_pretrained_and_chat(model_dir, hub_offline, cap_tokens, capsys):
    ns = _run(README_COMPLETION)
    out = capsys.readouterr().out
    assert "Q: Name the planets in the solar system? A: " in out and "'object': 'text_completion'" in out
    ns = _run(README_FROM_PRETRAINED, ns)
    assert ns["llm"].model_path.endswith("qwen2-0_5b-instruct-q8_0.gguf")
    assert ns["llm"].model_path.startswith(str(hub_offline))
    ns = _run(README_CHAT, ns)
    assert ns["llm"].chat_format == "llama-2"


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(model_path=smollm2_path, n_ctx=256, verbose=False)


def test_completion_shape_and_stream(llm):
    out = llm("The capital of France is", max_tokens=5, temperature=0)
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    ch = out["choices"][0]
    assert ch["finish_reason"] in ("stop", "length") and ch["index"] == 0 and ch["logprobs"] is None
    assert out["usage"]["completion_tokens"] <= 5
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    llm.engine.reset(0)              # greedy from the same (empty) KV state gives the same text
    chunks = list(llm.create_completion("The capital of France is", max_tokens=5, temperature=0, stream=True))
    assert chunks[-1]["choices"][0]["finish_reason"] == ch["finish_reason"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert "".join(c["choices"][0]["text"] for c in chunks) == ch["text"]


def test_logprobs(llm):
    out = llm.create_completion("Hello, my name is", max_tokens=3, temperature=0, logprobs=2)
    lp = out["choices"][0]["logprobs"]
    n = out["usage"]["completion_tokens"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n
    for tok, v, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert v <= 0 and tok in top and 1 <= len(top) <= 3
        assert max(top.values()) == pytest.approx(v, abs=1e-5)         # greedy: the best one was taken
    assert lp["text_offset"][0] == len("Hello, my name is")


def test_chat_completion_shape_and_stream(llm):
    msgs = [{"role": "user", "content": "Say hi."}]
    out = llm.create_chat_completion(messages=msgs, max_tokens=4, temperature=0)
    assert out["object"] == "chat.completion"
    msg = out["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"]
    llm.engine.reset(0)
    chunks = list(llm.create_chat_completion(messages=msgs, max_tokens=4, temperature=0, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == msg["content"]


def test_tokenize_seed_and_embed(llm):
    ids = llm.tokenize(b"Hello world")
    assert llm.detokenize(ids) == b"Hello world"
    assert llm.tokenize("Hello world") == ids
    assert llm.n_ctx() == 256 and llm.n_vocab() == 49152 and llm.n_embd() == 576
    llm.engine.reset(0)
    a = llm("Once upon a time", max_tokens=3, seed=7, temperature=1.0)["choices"][0]["text"]
    llm.engine.reset(0)
    b = llm("Once upon a time", max_tokens=3, seed=7, temperature=1.0)["choices"][0]["text"]
    assert a == b
    per_token = llm.embed("Hello world")                               # pooling none: one vector a token
    assert len(per_token) == len(ids) and len(per_token[0]) == 576
    e = llm.create_embedding(["Hello", "world"])
    assert [d["index"] for d in e["data"]] == [0, 1] and e["usage"]["prompt_tokens"] >= 2


def test_mean_pooled_normalized_embedding(smollm2_path):
    m = Llama(model_path=smollm2_path, n_ctx=64, embedding=True, pooling_type=1, verbose=False)
    v = m.embed("Hello world", normalize=True)
    assert len(v) == 576 and sum(x * x for x in v) == pytest.approx(1.0, rel=1e-4)


# --- bad input -------------------------------------------------------------------------------

def test_bad_input(llm, smollm2_path, hub_offline):
    with pytest.raises(ggrun.UnsupportedArgumentError, match="mirostat_mode=2"):
        llm("x", mirostat_mode=2)
    with pytest.raises(ggrun.UnsupportedArgumentError, match="tools"):
        llm.create_chat_completion(messages=[{"role": "user", "content": "x"}], tools=[{"type": "function"}])
    with pytest.raises(ggrun.BadArgumentError, match="unknown argument max_new_tokens"):
        llm("x", max_new_tokens=3)
    with pytest.raises(ggrun.ContextError, match="exceed context window of 256"):
        llm("word " * 300, max_tokens=1)
    with pytest.raises(ggrun.GGRunError, match="unknown chat template 'vicunaa'"):
        Llama(model_path=smollm2_path, chat_format="vicunaa", verbose=False)
    with pytest.raises(ggrun.BadArgumentError, match="unknown argument n_gpu_layer"):
        Llama(model_path=smollm2_path, n_gpu_layer=3)
    with pytest.raises(ggrun.ConflictingArgumentsError):
        Llama.from_pretrained(f"{DEEPSEEK_REPO}:Q4_K_M", filename="*Q8_0.gguf")
    with pytest.raises(ggrun.AmbiguousModelError, match="Q4_K_M.gguf, .*Q8_0.gguf"):
        Llama.from_pretrained(DEEPSEEK_REPO, filename="*.gguf")
    with pytest.raises(ggrun.ModelNotFoundError, match="no such file"):
        Llama(model_path=os.path.join("nowhere", "model.gguf"))
