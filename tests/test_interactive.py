"""Multi-turn chat: KV reuse between turns, stop rules, context limits, and the terminal driven
as a person would (pexpect): turns, Ctrl-C, /save, /reset, /load, Ctrl-D, bad input."""

import re
import subprocess
import sys

import pexpect
import pytest

from ggrun.chat import prompt_ids, render_messages
from ggrun.errors import ContextError
from ggrun.interactive import ChatSession, TextSession
from ggrun.loader import load
from ggrun.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)
TIMINGS = re.compile(r"\[prompt (\d+) new \+ (\d+) reused tokens.*?answer (\d+) tokens.*?context (\d+)/(\d+)")


@pytest.fixture(scope="module")
def smol(smollm2_path):
    return load(smollm2_path, n_ctx=512)


@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory, vocab_dir):
    from test_infill import write_tiny_deepseek

    return write_tiny_deepseek(tmp_path_factory.mktemp("chat") / "tiny-ds.gguf", vocab_dir / "ggml-vocab-deepseek-coder.gguf")


def test_smollm2_turn_ends_by_itself_and_next_turn_evaluates_only_new_tokens(smol):
    s = ChatSession(smol, params=GREEDY, max_tokens=40)
    r1 = s.send("Reply with just the number: what is 2+2?")
    assert r1.finish_reason == "stop" and 0 < r1.gen_n < 40          # ended at <|im_end|>, by itself
    assert "4" in r1.text and r1.cached_n + r1.prompt_n == len(s._fed_ids) - r1.gen_n
    n_kv = r1.n_past                                                   # what the KV holds after turn 1
    fed_text = s._fed_text
    full = render_messages(s.template, s.tok, s.all_messages() + [{"role": "user", "content": "And 3+3?"}])
    assert full.startswith(fed_text)
    delta = s.tok.encode(full[len(fed_text):], add_bos=False, parse_special=True)
    r2 = s.send("And 3+3?", max_tokens=2)
    assert r2.cached_n == n_kv                                         # nothing of turn 1 evaluated again
    assert r2.prompt_n == len(delta)                                   # only the new tokens
    assert [m["role"] for m in s.messages] == ["user", "assistant", "user", "assistant"]


def test_stopping_the_stream_keeps_the_partial_answer(tiny_ds):
    eng = load(tiny_ds, n_ctx=256)
    s = ChatSession(eng, params=GREEDY, max_tokens=50, ignore_eos=True)
    got = []
    for piece in s.stream("hello"):
        got.append(piece)
        if len(s.engine.cache.tokens[0]) > 40:
            break                                   # as Ctrl-C in the caller's loop
    r = s.last
    assert r is not None and r.finish_reason == "interrupted" and r.gen_n < 50
    assert s.messages[-1] == {"role": "assistant", "content": r.text} and r.text.startswith("".join(got))
    n_kv = len(eng.cache.tokens[0])
    assert s.send("again", max_tokens=1).cached_n == n_kv


def test_deepseek_template_stops_at_eot_and_keeps_one_bos(tiny_ds):
    eng = load(tiny_ds, n_ctx=256)
    forced_eot = SamplingParams(temperature=0, logit_bias={32021: 1e4})   # the model "says" <|EOT|> at once
    s = ChatSession(eng, params=forced_eot, max_tokens=8)
    assert s.template.name == "deepseek-coder" and s.stop_ids == {32021}
    r = s.send("Write a quick sort in Python.")
    assert r.finish_reason == "stop" and r.gen_n == 0
    text = render_messages(s.template, s.tok, [{"role": "user", "content": "Write a quick sort in Python."}])
    ids = prompt_ids(s.tok, text)
    assert eng.cache.tokens[0] == ids and ids[:2] != [32013, 32013]
    n_kv = len(eng.cache.tokens[0])
    r = s.send("Now in C.")
    assert r.cached_n == n_kv and eng.cache.tokens[0][n_kv:n_kv + 3] == s.tok.encode("\n<|EOT|>\n", add_bos=False)


def test_context_overflow_without_keep_is_one_error_and_keeps_the_session(tiny_ds, tmp_path):
    eng = load(tiny_ds, n_ctx=96)
    s = ChatSession(eng, params=GREEDY, max_tokens=2)
    s.send("hi")
    before = [dict(m) for m in s.messages]
    with pytest.raises(ContextError, match="more than the context of 96.*--keep") as e:
        s.send("word " * 200)
    assert "\n" not in str(e.value) and s.messages == before
    assert s.save(str(tmp_path / "s.bin")) > 0


def test_context_shift_with_keep(tiny_ds):
    eng = load(tiny_ds, n_ctx=96)
    s = ChatSession(eng, params=GREEDY, max_tokens=6, n_keep=-1)
    shifted = 0
    for i in range(4):
        r = s.send(f"message number {i} with a few more words")
        shifted += r.shifted
        assert len(eng.cache.tokens[0]) <= 96
    assert shifted > 0
    keep = s._keep_count()
    sys_ids = prompt_ids(s.tok, render_messages(s.template, s.tok, [], False))
    assert keep == len(sys_ids) and eng.cache.tokens[0][:keep] == sys_ids     # the system part stays


def test_text_session_appends_inputs_with_prefix_and_suffix(tiny_ds):
    eng = load(tiny_ds, n_ctx=256)
    s = TextSession(eng, prompt="Q: hello", in_prefix="\nQ: ", in_suffix="\nA:", params=GREEDY, max_tokens=2)
    s.send("")
    first = list(s._fed_ids)
    s.send("more")
    tok = s.tok
    expect = first + tok.encode("\nQ: ", add_bos=False) + tok.encode("more", add_bos=False, parse_special=False) \
        + tok.encode("\nA:", add_bos=False)
    assert s._fed_ids[:len(expect)] == expect and s.last.cached_n >= len(first) - 1


def _spawn(*args, timeout=300):
    return pexpect.spawn(sys.executable, ["-m", "ggrun", "chat", *args], encoding="utf-8", timeout=timeout,
                         dimensions=(40, 200))


def _turn(child, text):
    child.sendline(text)
    child.expect(TIMINGS)
    return [int(x) for x in child.match.groups()]


def test_terminal_session_as_a_person_uses_it(smollm2_path, tmp_path):
    """Three turns (the second interrupted with Ctrl-C), /save, /reset, /load, a fourth turn, Ctrl-D."""
    save = tmp_path / "conv.session"
    c = _spawn("-m", smollm2_path, "--temp", "0", "-n", "200", "-c", "1024")
    try:
        c.expect_exact("\r\n> ")
        new1, reused1, gen1, ctx1, _ = _turn(c, "Reply with just the number: what is 2+2?")
        assert reused1 == 0 and 0 < gen1 < 200                 # the answer ended by itself (<|im_end|>)
        c.expect_exact("\r\n> ")
        c.sendline("Write a long poem about the sea.")
        c.expect_exact("sea.\r\n")
        c.expect(r"\w\w")                                      # the answer is streaming
        c.sendintr()                                           # Ctrl-C: stop this answer only
        c.expect_exact("[interrupted]")
        c.expect(TIMINGS)
        new2, reused2, gen2, ctx2 = (int(x) for x in c.match.groups()[:4])
        assert reused2 == ctx1 and 0 < new2 < 30 and gen2 < 200  # turn 2 evaluated only its new tokens
        c.expect_exact("\r\n> ")
        new3, reused3, _, ctx3, _ = _turn(c, "Reply with just the number: what is 3+3?")
        assert reused3 == ctx2 and 0 < new3 < 30               # the interrupted answer stayed in the KV
        c.expect_exact("\r\n> ")
        c.sendline(f"/save {save}")
        c.expect(r"\[saved 6 messages, (\d+) tokens")
        saved = int(c.match.group(1))
        assert saved == ctx3
        c.expect_exact("\r\n> ")
        c.sendline("/reset")
        c.expect_exact("[conversation cleared]")
        c.expect_exact("\r\n> ")
        c.sendline(f"/load {save}")
        c.expect_exact(f"[loaded 6 messages, {saved} tokens")
        c.expect_exact("\r\n> ")
        new4, reused4, _, _, _ = _turn(c, "Reply with just the word: what color is the sky?")
        assert reused4 == saved and 0 < new4 < 30              # the loaded KV state is used
        c.expect_exact("\r\n> ")
        c.sendeof()                                            # Ctrl-D ends the session
        c.expect(pexpect.EOF)
    finally:
        c.close()
    assert c.exitstatus == 0


def test_terminal_ctrl_c_at_the_prompt_ends_the_session(smollm2_path):
    c = _spawn("-m", smollm2_path, "--temp", "0", "-n", "300", "-c", "512")
    try:
        c.expect_exact("\r\n> ")
        c.sendline("Write a long poem about the sea.")
        c.expect_exact("sea.\r\n")
        c.expect(r"\w\w")
        c.sendintr()                                           # first Ctrl-C: the answer stops
        c.expect_exact("[interrupted]")
        c.expect(TIMINGS)
        c.expect_exact("\r\n> ")
        c.sendintr()                                           # second Ctrl-C, at the prompt: the end
        c.expect(pexpect.EOF)
    finally:
        c.close()
    assert c.exitstatus == 0


def test_bad_input_on_stdin_one_line_each_and_save_still_works(tiny_ds, tmp_path):
    save = tmp_path / "after.session"
    stdin = b"hi\n\xff\xfe\x00junk\n" + b"word " * 300 + b"\n/bogus\n" + f"/save {save}\n".encode()
    r = subprocess.run([sys.executable, "-m", "ggrun", "chat", "-m", tiny_ds, "--temp", "0", "-n", "2", "-c", "96"],
                       input=stdin, capture_output=True, timeout=300)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 3 and "Traceback" not in err
    assert "not UTF-8" in errors[0] and "context of 96" in errors[1] and "unknown command /bogus" in errors[2]
    assert "[saved 2 messages" in err and save.exists()


@pytest.mark.parametrize("args,needle", [
    (["--chat-template", "nope"], "unknown chat template 'nope'"),
    (["--chat-template-file", "/nonexistent/t.jinja"], "no such file"),
])
def test_chat_cli_bad_template(args, needle, smollm2_path):
    r = subprocess.run([sys.executable, "-m", "ggrun", "chat", "-m", smollm2_path, *args], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
