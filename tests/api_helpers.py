"""Shared by the API tests: an offline Hub cache holding SmolLM2, and a cap on generation
length so that snippets written for real use (max_tokens=512 …) run verbatim in seconds."""

from __future__ import annotations

import pytest

from hub_cache import add_repo

CAP = 8
DEEPSEEK_REPO = "TheBloke/deepseek-coder-6.7B-instruct-GGUF"


@pytest.fixture
def cap_tokens(monkeypatch):
    """Engine.generate makes at most CAP tokens, whatever the caller asked for."""
    from ggrun.engine import Engine

    real = Engine.generate

    def capped(self, prompt, params=None, max_tokens=-1, *args, **kwargs):
        if max_tokens < 0 or max_tokens > CAP:
            max_tokens = CAP
        return real(self, prompt, params, max_tokens, *args, **kwargs)

    monkeypatch.setattr(Engine, "generate", capped)
    return CAP


@pytest.fixture
def hub_offline(tmp_path, monkeypatch, smollm2_path):
    """HF_HUB_OFFLINE with a cache holding the DeepSeek Coder repo's names over SmolLM2's bytes
    (Q4_K_M), a second GGUF (Q8_0, a stub) and Qwen2's q8_0 name, as llama-cpp-python's README uses."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    add_repo(cache, DEEPSEEK_REPO, {"deepseek-coder-6.7b-instruct.Q4_K_M.gguf": smollm2_path,
                                    "deepseek-coder-6.7b-instruct.Q8_0.gguf": b"GGUF stub", "config.json": b"{}"})
    add_repo(cache, "Qwen/Qwen2-0.5B-Instruct-GGUF", {"qwen2-0_5b-instruct-q8_0.gguf": smollm2_path})
    return cache
