"""ctransformers' API on ggrun: the seed's snippet with only the import changed, the LLM's
methods, and bad input (wrong model_type, a repo with several GGUF files, conflicts)."""

import pytest

from api_helpers import CAP, DEEPSEEK_REPO, cap_tokens, hub_offline  # noqa: F401  (fixtures)

import ggrun
from ggrun import AutoModelForCausalLM

# The seed's ctransformers snippet (TheBloke's model card), verbatim.
SEED_SNIPPET = '''
from ctransformers import AutoModelForCausalLM

# Set gpu_layers to the number of layers to offload to GPU. Set to 0 if no GPU acceleration is available on your system.
llm = AutoModelForCausalLM.from_pretrained("TheBloke/deepseek-coder-6.7B-instruct-GGUF", model_file="deepseek-coder-6.7b-instruct.Q4_K_M.gguf", model_type="deepseek", gpu_layers=50)

print(llm("AI is going to"))
'''


def test_seed_snippet_with_only_the_import_changed(hub_offline, cap_tokens, capsys):
    code = SEED_SNIPPET.replace("from ctransformers import", "from ggrun import")
    assert code.count("\n") == SEED_SNIPPET.count("\n") and code != SEED_SNIPPET
    ns: dict = {}
    exec(compile(code, "seed_snippet", "exec"), ns)
    out = capsys.readouterr().out
    assert out.strip(), "the snippet printed no text"
    llm = ns["llm"]
    assert llm.model_path.startswith(str(hub_offline)) and llm.model_type == "deepseek"
    assert llm.config.gpu_layers == 50


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return AutoModelForCausalLM.from_pretrained(smollm2_path, model_type="llama", context_length=256,
                                                temperature=0.0, max_new_tokens=6)


def test_call_stream_and_stop(llm):
    text = llm("The capital of France is")
    assert isinstance(text, str) and text
    llm.engine.reset(0)              # greedy from the same (empty) KV state gives the same text
    pieces = list(llm("The capital of France is", stream=True))
    assert len(pieces) >= 2 and "".join(pieces) == text            # greedy: the same text
    first_word = text.split()[0]
    llm.engine.reset(0)
    cut = llm("The capital of France is", stop=[first_word])
    assert first_word not in cut and text.startswith(cut)


def test_tokens_generate_eval_sample(llm):
    ids = llm.tokenize("AI is going to")
    assert ids and all(isinstance(i, int) for i in ids)
    assert llm.detokenize(ids) == "AI is going to"
    assert llm.detokenize(ids, decode=False) == b"AI is going to"
    got = []
    for tok in llm.generate(ids):
        got.append(tok)
        if len(got) == 3:
            break
    assert len(got) == 3 and all(isinstance(t, int) for t in got)
    llm.reset()
    llm.engine.reset(0)
    llm.eval(ids)
    assert len(llm.logits) == llm.vocab_size
    tok = llm.sample(temperature=0)
    assert tok == got[0]                                              # greedy, same context
    assert llm.is_eos_token(llm.eos_token_id) and not llm.is_eos_token(ids[0])
    assert llm.context_length == 256


def test_config_and_embed(llm):
    c = llm.config
    assert (c.top_k, c.top_p, c.repetition_penalty, c.last_n_tokens, c.max_new_tokens) == (40, 0.95, 1.1, 64, 6)
    vec = llm.embed("hello")
    assert len(vec) == 576 and all(isinstance(v, float) for v in vec)


# --- bad input: one exception type per mistake, all under ggrun.GGRunError -------------------

def test_wrong_model_type_for_the_file(smollm2_path):
    with pytest.raises(ggrun.ModelTypeError) as e:
        AutoModelForCausalLM.from_pretrained(smollm2_path, model_type="gpt2")
    msg = str(e.value)
    assert "model_type='gpt2'" in msg and "'llama'" in msg and smollm2_path in msg and "\n" not in msg
    assert isinstance(e.value, ggrun.BadArgumentError) and isinstance(e.value, ggrun.GGRunError)
    with pytest.raises(ggrun.ModelTypeError, match="not a known model type"):
        AutoModelForCausalLM.from_pretrained(smollm2_path, model_type="llamaa")


def test_repo_with_several_gguf_files_needs_model_file(hub_offline):
    with pytest.raises(ggrun.AmbiguousModelError) as e:
        AutoModelForCausalLM.from_pretrained(DEEPSEEK_REPO, model_type="deepseek")
    msg = str(e.value)
    assert "deepseek-coder-6.7b-instruct.Q4_K_M.gguf" in msg and "deepseek-coder-6.7b-instruct.Q8_0.gguf" in msg
    assert e.value.candidates == ["deepseek-coder-6.7b-instruct.Q4_K_M.gguf", "deepseek-coder-6.7b-instruct.Q8_0.gguf"]


def test_conflicting_and_unknown_arguments(smollm2_path, hub_offline):
    with pytest.raises(ggrun.ConflictingArgumentsError):
        AutoModelForCausalLM.from_pretrained(smollm2_path, model_file="other.gguf")
    with pytest.raises(ggrun.ConflictingArgumentsError):
        AutoModelForCausalLM.from_pretrained(f"{DEEPSEEK_REPO}:Q4_K_M", model_file="x.gguf")
    with pytest.raises(ggrun.BadArgumentError, match="unknown argument gpu_layer"):
        AutoModelForCausalLM.from_pretrained(smollm2_path, gpu_layer=50)
    with pytest.raises(ggrun.UnsupportedArgumentError, match="hf=True"):
        AutoModelForCausalLM.from_pretrained(smollm2_path, hf=True)
    with pytest.raises(ggrun.HubUnreachableError, match="not in the Hugging Face cache"):
        AutoModelForCausalLM.from_pretrained("TheBloke/not-cached-GGUF", model_file="x.Q4_K_M.gguf")
