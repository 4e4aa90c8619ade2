"""Chat templates: byte-exact rendering, llama.cpp's tokens, built-ins, selection, hostile templates."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ggrun import chat
from ggrun.chat import ChatTemplateError, builtin_template, render

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((ROOT / "tests" / "data" / "chat" / "chat_golden.json").read_text())
DS_VOCAB = ROOT / "tests" / "data" / "vocab" / "ggml-vocab-deepseek-coder.gguf"

_FILES: dict = {}


def _vocab(name, smollm2_path=None):
    """(metadata, tokenizer) of the golden's vocab for a template."""
    from ggrun.gguf_file import GGUFFile
    from ggrun.tokenizer import Tokenizer

    if name not in _FILES:
        from ggrun.default_model import default_model_path

        path = DS_VOCAB if name == "deepseek-coder" else default_model_path(fetch=False)
        f = GGUFFile(str(path))
        _FILES[name] = (f.metadata, Tokenizer.from_gguf(f))
    return _FILES[name]


def test_builtin_deepseek_coder_is_deepseek_ais_template():
    assert chat.DEEPSEEK_CODER == GOLDEN["templates"]["deepseek-coder"]["source"]


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{c['template']}-{c['conversation']}")
def test_render_and_tokens_equal_transformers_and_llama_cpp(case, vocab_dir):
    md, tok = _vocab(case["template"])
    tpl = chat.select_template(md)            # deepseek: no chat_template in the vocab → detected
    assert tpl.name == ("deepseek-coder" if case["template"] == "deepseek-coder" else "gguf")
    text = chat.render_messages(tpl, tok, case["messages"], case["add_generation_prompt"])
    assert text == case["text"]
    ids = chat.prompt_ids(tok, text)
    assert ids == case["ids"]
    if tok.add_bos:
        assert ids[0] == tok.bos_id and ids[1] != tok.bos_id          # exactly one BOS


def test_system_prompt_with_or_without_final_period(vocab_dir):
    md, tok = _vocab("deepseek-coder")
    tpl = builtin_template("deepseek-coder")
    user = [{"role": "user", "content": "hi"}]
    default = chat.render_messages(tpl, tok, user)
    assert chat.DEEPSEEK_CODER_SYSTEM + "\n### Instruction:\nhi\n### Response:\n" in default
    for system in (chat.DEEPSEEK_CODER_SYSTEM, chat.DEEPSEEK_CODER_SYSTEM + "."):
        text = chat.render_messages(tpl, tok, chat.with_system(user, system))
        assert text == f"<｜begin▁of▁sentence｜>{system}### Instruction:\nhi\n### Response:\n"


def test_deepseek_end_of_turn_is_a_stop_token(vocab_dir):
    md, tok = _vocab("deepseek-coder")
    ids, strings = chat.turn_end_stops(builtin_template("deepseek-coder"), tok, md)
    assert ids == {32021} and strings == []
    assert not tok.is_eog(32021) and tok.is_eog(32014)   # the vocab alone wouldn't stop there


CONV = [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "Who are you"}]


@pytest.mark.parametrize("name,bos,eos,expected", [
    ("chatml", "", "", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n"),
    ("llama2", "<s>", "</s>", "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
     "<s>[INST] Who are you [/INST]"),
    ("llama3", "<|begin_of_text|>", "", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ("mistral", "", "</s>", " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]"),
    ("alpaca", "", "</s>", "You are a helpful assistant\n\n### Instruction:\nHello\n\n### Response:\nHi there</s>\n\n"
     "### Instruction:\nWho are you\n\n### Response:\n"),
    ("zephyr", "", "</s>", "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n"
     "<|user|>\nWho are you</s>\n<|assistant|>\n"),
    ("phi3", "", "", "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there"
     "<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n"),
    ("gemma", "<bos>", "", "<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>"
     "model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n"),
])
def test_builtins(name, bos, eos, expected):
    assert builtin_template(name).render(CONV, True, bos, eos) == expected


def test_builtin_errors_and_aliases(tmp_path):
    assert builtin_template("DeepSeek").name == "deepseek-coder"
    with pytest.raises(ChatTemplateError, match="unknown chat template 'nope'.*deepseek-coder"):
        builtin_template("nope")
    with pytest.raises(ChatTemplateError, match="no such file"):
        chat.template_from_file(str(tmp_path / "missing.jinja"))
    bad = tmp_path / "bad.jinja"
    bad.write_bytes(b"\xff\xfe{{ x }}")
    with pytest.raises(ChatTemplateError, match="not UTF-8"):
        chat.template_from_file(str(bad))
    bad.write_text("{% for %}")
    with pytest.raises(ChatTemplateError, match="syntax error on line 1"):
        chat.template_from_file(str(bad))
    with pytest.raises(ChatTemplateError, match="alternate"):
        builtin_template("llama2").render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_selection_order(tmp_path, vocab_dir):
    md, _ = _vocab("deepseek-coder")
    f = tmp_path / "t.jinja"
    f.write_text("{{ messages[0]['content'] }}")
    assert chat.select_template(md).name == "deepseek-coder"
    assert chat.select_template(md, name="chatml").name == "chatml"
    assert chat.select_template(md, name="chatml", file=str(f)).name == "t.jinja"
    assert chat.select_template({"tokenizer.chat_template": "{{ 1 }}"}).name == "gguf"
    assert chat.select_template({}).name == "chatml"            # llama.cpp's fallback


HOSTILE = {
    "dunder class": "{{ messages.__class__ }}",
    "mro walk": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ self.__init__.__globals__ }}",
    "mutating a list": "{{ messages.append(1) }}",
    "nested endless loop": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "huge range": "{% for a in range(10**9) %}x{% endfor %}",
    "huge repeat": "{{ 'x' * 10**9 }}",
    "doubling": "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "list doubling": "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "replace bomb": "{% set s = 'x' * 100000 %}{{ s|replace('x', s) }}",
    "format width": "{{ '{:>999999999}'.format('x') }}",
    "percent width": "{{ '%*s' % (999999999, 'x') }}",
    "center": "{{ 'x'.center(10**10) }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "output flood": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "slow filters": "{% set l = range(100000)|list %}{% for i in range(100000) %}{% set x = l|sort %}{% endfor %}",
    "raise": "{{ raise_exception('go away') }}",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_template_fails_clearly(name, monkeypatch):
    monkeypatch.setattr(chat, "MAX_SECONDS", 1.0)
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError) as e:
        render(HOSTILE[name], CONV, True)
    assert time.monotonic() - t0 < chat.MAX_SECONDS + 2
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("chat template")


def test_template_features_transformers_templates_use():
    assert render("{% for i in range(5) %}{% if i > 2 %}{% break %}{% endif %}{{ i }}{% endfor %}", []) == "012"
    assert render("{% generation %}abc{% endgeneration %}", []) == "abc"
    assert render("{{ messages[0]|tojson }}", [{"role": "user", "content": "é<"}]) == '{"role": "user", "content": "é<"}'
    assert render("{% if not add_generation_prompt is defined %}x{% endif %}{{ bos_token }}", [], bos_token="<s>") == "<s>"


def _ggrun(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "ggrun", *args], capture_output=True, text=True, timeout=300,
                          input=stdin)


def test_render_cli_matches_golden(tmp_path, vocab_dir):
    case = next(c for c in GOLDEN["cases"] if c["template"] == "deepseek-coder" and c["conversation"] == "three_turns_system")
    msgs = [m for m in case["messages"] if m["role"] != "system"]
    system = next(m["content"] for m in case["messages"] if m["role"] == "system")
    f = tmp_path / "m.json"
    f.write_text(json.dumps(msgs))
    r = _ggrun("render", "-m", str(DS_VOCAB), "--messages", str(f), "--system", system, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["prompt"] == case["text"] and out["ids"] == case["ids"]
    r = _ggrun("render", "--chat-template", "deepseek-coder", "--messages", "-", "--system", system,
               stdin=json.dumps(msgs))
    assert r.stdout == case["text"]
    r = _ggrun("render", "-m", str(DS_VOCAB), "--messages", str(f), "--ids")
    assert "number of tokens in prompt = " in r.stdout and " 32013 -> '<｜begin▁of▁sentence｜>'" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--chat-template", "nope"], "unknown chat template"),
    (["--chat-template-file", "/nonexistent/t.jinja"], "no such file"),
])
def test_render_cli_errors(tmp_path, args, needle):
    f = tmp_path / "m.json"
    f.write_text('[{"role": "user", "content": "hi"}]')
    r = _ggrun("render", *args, "--messages", str(f))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr


def test_messages_file_errors(tmp_path):
    f = tmp_path / "m.json"
    for content, needle in [("{", "not valid JSON"), ('[{"content": "x"}]', "no 'role'"), ('"x"', "JSON list")]:
        f.write_text(content)
        with pytest.raises(ChatTemplateError, match=needle):
            chat.load_messages(str(f))
    f.write_text('[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]')
    assert chat.load_messages(str(f)) == [{"role": "user", "content": "ab"}]
