"""The command line as a llama.cpp user drives it, on the real SmolLM2 file."""

import json
import subprocess
import sys


def ggrun(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ggrun", *args], capture_output=True, text=True, timeout=timeout)


def test_tokenize_ids_like_llama_tokenize(smollm2_path):
    golden = json.load(open("tests/data/golden/smollm2_q4_1_greedy.json"))["prompts"][0]
    r = ggrun("tokenize", "-m", smollm2_path, "-p", golden["prompt"], "--ids")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == golden["prompt_ids"]


def test_run_no_display_prompt_and_timings(smollm2_path):
    r = ggrun("run", "-m", smollm2_path, "-p", "def fib(n):", "-n", "8", "--temp", "0", "--no-display-prompt")
    assert r.returncode == 0, r.stderr
    assert "def fib(n):" not in r.stdout and r.stdout.strip()
    for line in ("load time", "prompt eval time", "eval time", "total time"):
        assert line in r.stderr
    # greedy is deterministic (and llama.cpp's --no-warmup is taken: a warm-up runs only with GPU layers)
    r2 = ggrun("run", "-m", smollm2_path, "-p", "def fib(n):", "-n", "8", "--temp", "0", "--no-display-prompt",
               "--no-warmup")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout == r.stdout


def test_same_seed_same_text(smollm2_path):
    a = ggrun("run", "-m", smollm2_path, "-p", "Once upon a time", "-n", "12", "--temp", "0.9", "-s", "7", "--no-display-prompt")
    b = ggrun("run", "-m", smollm2_path, "-p", "Once upon a time", "-n", "12", "--temp", "0.9", "-s", "7", "--no-display-prompt")
    assert a.returncode == 0 and a.stdout == b.stdout


def test_color_and_escapes(smollm2_path):
    r = ggrun("run", "-m", smollm2_path, "-p", "a\\tb", "-n", "1", "--temp", "0", "--color")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("\033[33ma\tb\033[0m")


def test_default_model_and_python_dash_m():
    r = ggrun("run", "-p", "Hi", "-n", "2", "--temp", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hi")


def test_bench_json(smollm2_path):
    r = ggrun("bench", "-m", smollm2_path, "-p", "8", "-n", "4", "-r", "2", "-t", "2", "-o", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["test"] for x in rows] == ["pp8", "tg4"]
    assert all(x["avg_ts"] > 0 and "stdev_ts" in x for x in rows)
    # the Markdown table has llama-bench's columns: threads for the CPU backend (ngl for a GPU's)
    r = ggrun("bench", "-m", smollm2_path, "-p", "8", "-n", "0", "-r", "1", "-t", "2")
    assert r.returncode == 0, r.stderr
    head, _, row = r.stdout.strip().splitlines()
    assert head == "| model | size | params | backend | threads | test | t/s |"
    assert "| CPU | 2 | pp8 |" in row


def test_stop_at_reverse_prompt(smollm2_path):
    r = ggrun("run", "-m", smollm2_path, "-p", "1, 2, 3, 4,", "-n", "40", "--temp", "0", "-r", "8", "--no-display-prompt")
    assert r.returncode == 0, r.stderr
    assert "8" not in r.stdout and "9" not in r.stdout


def test_no_cpu_kernels_uses_the_torch_path(tiny_path):
    r = ggrun("--no-cpu-kernels", "run", "-m", tiny_path, "-p", "he", "-n", "3", "--temp", "0", "--no-display-prompt")
    assert r.returncode == 0, r.stderr
    assert "C kernels unavailable (disabled by ggrun.cpu.configure(enabled=False)" in r.stderr
    r = ggrun("run", "-m", tiny_path, "-p", "he", "-n", "3", "--temp", "0", "--no-display-prompt")
    assert r.returncode == 0, r.stderr
    assert "C kernels unavailable" not in r.stderr


def test_single_turn_chat_reports_sampling_time(smollm2_path):
    """-cnv -st answers once through the chat template and prints llama.cpp's timing lines with the
    sampler's own time (it used to print 0.00 ms)."""
    import re

    r = ggrun("run", "-m", smollm2_path, "-cnv", "-st", "--temp", "0", "-n", "8", "-p", "Say hi.")
    assert r.returncode == 0, r.stderr
    m = re.search(r"sampling time =\s+([\d.]+) ms /\s+(\d+) runs", r.stderr)
    assert m and int(m.group(2)) > 0 and float(m.group(1)) > 0.0, r.stderr
