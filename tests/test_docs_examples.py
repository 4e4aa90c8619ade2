"""Every ```python block of docs/*.md runs (in page order, one namespace per page) against
SmolLM2: `model.gguf` in the working folder, the Hub as an offline huggingface_hub cache.
```sh test blocks run their `ggrun` lines. Public API members have docstrings."""

import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from api_helpers import cap_tokens, hub_offline  # noqa: F401  (fixtures)
from hub_cache import add_repo

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: Path):
    text = page.read_text()
    for m in FENCE.finditer(text):
        yield m.group(1), m.group(2).strip(), m.group(3), text.count("\n", 0, m.start()) + 2


@pytest.fixture
def docs_env(tmp_path, monkeypatch, smollm2_path, hub_offline):  # noqa: F811
    """cwd with model.gguf; the offline cache also holds a split model (tiny llama, 3 parts)."""
    import functools

    import gguf
    from tiny_model import write_tiny_llama

    work = tmp_path / "work"
    work.mkdir()
    (work / "model.gguf").symlink_to(smollm2_path)
    real = gguf.GGUFWriter
    monkeypatch.setattr(gguf, "GGUFWriter", functools.partial(real, split_max_tensors=8))
    write_tiny_llama(tmp_path / "tiny-Q8_0.gguf")
    monkeypatch.setattr(gguf, "GGUFWriter", real)
    parts = sorted(tmp_path.glob("tiny-Q8_0-*-of-*.gguf"))
    add_repo(hub_offline, "ggrun-examples/tiny-split-GGUF", {f"Q8_0/{p.name}": p for p in parts})
    monkeypatch.chdir(work)
    return work, hub_offline


PAGES = sorted(p.name for p in DOCS.glob("*.md"))


def test_every_entry_point_has_a_page():
    assert {"README.md", "load.md", "ctransformers.md", "llama-cpp-python.md", "hub.md", "langchain.md"} <= set(PAGES)
    for name in PAGES:
        assert any(lang == "python" for lang, *_ in blocks(DOCS / name)), f"{name} has no runnable example"


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, docs_env, cap_tokens, capsys):  # noqa: F811
    if page == "langchain.md":
        pytest.importorskip("langchain_core")
    work, cache = docs_env
    ns: dict = {"__name__": "__docs__"}
    ran = 0
    for lang, info, code, line in blocks(DOCS / page):
        if lang == "python" and "skip" not in info.split():
            exec(compile(code, f"docs/{page}:{line}", "exec"), ns)
            ran += 1
        elif lang == "sh" and "test" in info.split():
            env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PATH": "/usr/bin:/bin",
                   "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
            for cmd in filter(None, (c.strip() for c in code.splitlines())):
                argv = shlex.split(cmd)
                assert argv[0] == "ggrun", cmd
                r = subprocess.run([sys.executable, "-m", "ggrun", *argv[1:]], capture_output=True, text=True,
                                   env=env, cwd=work, timeout=300)
                assert r.returncode == 0, f"docs/{page}:{line}: {cmd}: {r.stderr}"
                assert r.stdout.strip(), cmd
            ran += 1
    assert ran, page
    assert capsys.readouterr().out.strip()


def test_public_api_has_docstrings_and_types():
    import ggrun
    from ggrun.api import LLM, AutoModelForCausalLM, Llama

    members = [ggrun.load, ggrun.resolve_model, AutoModelForCausalLM.from_pretrained, Llama.from_pretrained]
    members += [getattr(LLM, n) for n in ("__call__", "generate", "tokenize", "detokenize", "eval", "embed")]
    members += [getattr(Llama, n) for n in ("__init__", "create_completion", "create_chat_completion", "tokenize",
                                            "detokenize", "embed", "create_embedding")]
    for m in members:
        assert inspect.getdoc(m), m
        sig = inspect.signature(m)
        assert all(p.annotation is not inspect.Parameter.empty for n, p in sig.parameters.items()
                   if n not in ("self", "cls") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)), m
