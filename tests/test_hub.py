"""Model names → files: local files and folders, Hub repos, repo:QUANT, split GGUFs, offline and
unreachable Hubs. The Hub is a real huggingface_hub cache laid out on disk (no network)."""

import functools
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hub_cache import add_repo

import ggrun
from ggrun.hub import (AmbiguousModelError, ConflictingArgumentsError, HubSpec, HubUnreachableError, SplitModelError,
                       find_model, gguf_models, open_gguf, parse_hub_spec, resolve_model, select_model, split_parts)

FILES = ["README.md", "x.Q2_K.gguf", "x.Q4_K_M.gguf", "x.Q4_K_S.gguf", "x.Q8_0.gguf",
         "big/x-Q6_K-00001-of-00002.gguf", "big/x-Q6_K-00002-of-00002.gguf", "mmproj-x-f16.gguf"]


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty huggingface_hub cache with HF_HUB_OFFLINE on (env and the constant read at import)."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def unreachable_hub(offline_cache, monkeypatch):
    """Online mode, but the endpoint is a closed local port: every request fails at once."""
    import huggingface_hub.constants as c

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(c, "ENDPOINT", "http://127.0.0.1:9")
    return offline_cache


@pytest.fixture(scope="module")
def split_tiny(tmp_path_factory):
    """The tiny llama written whole and as 3 split parts (gguf-py's own splitter)."""
    import gguf
    from tiny_model import write_tiny_llama

    d = tmp_path_factory.mktemp("split")
    whole = write_tiny_llama(d / "whole.gguf")
    real = gguf.GGUFWriter
    gguf.GGUFWriter = functools.partial(real, split_max_tensors=8)
    try:
        write_tiny_llama(d / "tiny.gguf")
    finally:
        gguf.GGUFWriter = real
    parts = sorted(d.glob("tiny-*-of-*.gguf"))
    assert len(parts) == 3, parts
    return Path(whole), parts


# --- names ------------------------------------------------------------------------------

def test_parse_hub_spec():
    assert parse_hub_spec("TheBloke/deepseek-coder-33B-instruct-GGUF:Q4_K_M") == \
        HubSpec("TheBloke/deepseek-coder-33B-instruct-GGUF", quant="Q4_K_M")
    assert parse_hub_spec("org/name") == HubSpec("org/name")
    assert parse_hub_spec("org/name/sub/f.Q8_0.gguf") == HubSpec("org/name", filename="sub/f.Q8_0.gguf")
    assert parse_hub_spec("hf://org/name:q8_0") == HubSpec("org/name", quant="q8_0")
    for not_hub in ("model.gguf", "dir/model.gguf", "./org/name", "/abs/path", "org/name:", "a b/c"):
        assert parse_hub_spec(not_hub) is None, not_hub


def test_gguf_models_groups_splits_and_skips_projectors():
    units = gguf_models(FILES)
    assert ["big/x-Q6_K-00001-of-00002.gguf", "big/x-Q6_K-00002-of-00002.gguf"] in units
    assert all("mmproj" not in u[0] for u in units)
    assert len(units) == 5


@pytest.mark.parametrize("quant,want", [("Q4_K_M", "x.Q4_K_M.gguf"), ("q8_0", "x.Q8_0.gguf"),
                                        ("Q6_K", "big/x-Q6_K-00001-of-00002.gguf")])
def test_select_by_quant(quant, want):
    assert select_model(FILES, "org/x", quant=quant)[0] == want


def test_select_by_glob_and_name():
    assert select_model(FILES, "org/x", filename="*Q4_K_S.gguf") == ["x.Q4_K_S.gguf"]
    assert select_model(FILES, "org/x", filename="x.Q2_K.gguf") == ["x.Q2_K.gguf"]
    assert len(select_model(FILES, "org/x", filename="*Q6_K*")) == 2           # both parts
    assert select_model(FILES, "org/x", filename="mmproj-x-f16.gguf") == ["mmproj-x-f16.gguf"]


def test_select_errors_list_the_files():
    with pytest.raises(AmbiguousModelError) as e:
        select_model(FILES, "org/x")
    msg = str(e.value)
    assert "5 GGUF models" in msg and "x.Q4_K_M.gguf" in msg and "x-Q6_K-00001-of-00002.gguf (2 parts)" in msg
    assert "\n" not in msg and len(e.value.candidates) == 5
    with pytest.raises(AmbiguousModelError, match="matches 2 models: a.Q4_K_M.gguf, b.Q4_K_M.gguf"):
        select_model(["a.Q4_K_M.gguf", "b.Q4_K_M.gguf"], "org/x", quant="Q4_K_M")
    with pytest.raises(ggrun.ModelNotFoundError):
        select_model(FILES, "org/x", quant="Q4_K")     # a prefix of Q4_K_M / Q4_K_S is not a match
    with pytest.raises(ggrun.ModelNotFoundError, match="no GGUF file of quant 'Q5_K_M'.*x.Q8_0.gguf"):
        select_model(FILES, "org/x", quant="Q5_K_M")
    with pytest.raises(ggrun.ModelNotFoundError, match="no GGUF file matches"):
        select_model(FILES, "org/x", filename="*IQ1*.gguf")


# --- local files and folders ------------------------------------------------------------

def test_local_file_folder_and_default(tmp_path, smollm2_path):
    assert resolve_model(None) == smollm2_path
    assert resolve_model(smollm2_path) == smollm2_path
    d = tmp_path / "models"
    d.mkdir()
    (d / "a.Q4_1.gguf").symlink_to(smollm2_path)
    assert resolve_model(str(d)) == str(d / "a.Q4_1.gguf")
    (d / "a.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(AmbiguousModelError, match="a.Q4_1.gguf, a.Q8_0.gguf"):
        resolve_model(str(d))
    assert resolve_model(f"{d}:Q4_1") == str(d / "a.Q4_1.gguf")
    assert find_model(str(d), "*Q8_0*") == str(d / "a.Q8_0.gguf")
    with pytest.raises(ggrun.ModelNotFoundError, match="no such file"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_conflicting_names(tmp_path, smollm2_path):
    with pytest.raises(ConflictingArgumentsError, match="is a file"):
        find_model(smollm2_path, "other.gguf")
    with pytest.raises(ConflictingArgumentsError, match="already picks a file"):
        find_model("org/name:Q4_K_M", "x.gguf")
    with pytest.raises(ConflictingArgumentsError):
        find_model(None, "x.gguf")
    assert issubclass(ConflictingArgumentsError, ggrun.BadArgumentError)


def test_split_parts_found_and_checked(split_tiny, tmp_path):
    _whole, parts = split_tiny
    assert split_parts(parts[0]) == [str(p) for p in parts]
    assert resolve_model(str(parts[0])) == str(parts[0])
    with pytest.raises(SplitModelError, match="pass the first part"):
        split_parts(parts[1])
    lone = tmp_path / parts[0].name
    lone.symlink_to(parts[0])
    with pytest.raises(SplitModelError, match=r"2 are missing.*00002-of-00003.gguf, .*00003-of-00003.gguf"):
        resolve_model(str(lone))


def test_open_gguf_merges_split_parts(split_tiny):
    whole, parts = split_tiny
    from ggrun.gguf_file import GGUFFile

    a, b = GGUFFile(whole), open_gguf(parts[0])
    assert b.metadata["split.count"] == 3 and len(b.parts) == 3
    assert a.tensors.keys() == b.tensors.keys()
    for name, t in a.tensors.items():
        assert (t.data == b.tensors[name].data).all(), name
    assert {k: v for k, v in b.metadata.items() if not k.startswith("split.")} == a.metadata


def test_split_model_loads_and_runs_like_the_whole(split_tiny, monkeypatch):
    """What loader.load does once it opens files with hub.open_gguf instead of GGUFFile."""
    import torch

    import ggrun.loader as loader
    import ggrun.tokenizer

    whole, parts = split_tiny
    ids = [72, 101, 108, 108, 111]
    # the tiny vocab has no merges, which the tokenizer refuses; eval() needs no tokenizer
    monkeypatch.setattr(ggrun.tokenizer.Tokenizer, "from_gguf", classmethod(lambda cls, f: None))
    ref = ggrun.load(str(whole), n_ctx=64).eval(ids)
    got = ggrun.load(str(parts[0]), n_ctx=64).eval(ids)
    assert torch.equal(ref, got)


# --- the Hub, offline -------------------------------------------------------------------

def test_offline_cache_repo_quant(offline_cache, smollm2_path):
    snap = add_repo(offline_cache, "TheBloke/deepseek-coder-6.7B-instruct-GGUF",
                    {"deepseek-coder-6.7b-instruct.Q4_K_M.gguf": smollm2_path,
                     "deepseek-coder-6.7b-instruct.Q8_0.gguf": b"GGUF not really", "config.json": b"{}"})
    want = str(snap / "deepseek-coder-6.7b-instruct.Q4_K_M.gguf")
    assert resolve_model("TheBloke/deepseek-coder-6.7B-instruct-GGUF:Q4_K_M") == want
    assert find_model("TheBloke/deepseek-coder-6.7B-instruct-GGUF", "*Q4_K_M.gguf") == want
    assert resolve_model("TheBloke/deepseek-coder-6.7B-instruct-GGUF/deepseek-coder-6.7b-instruct.Q4_K_M.gguf") == want
    with pytest.raises(AmbiguousModelError) as e:
        resolve_model("TheBloke/deepseek-coder-6.7B-instruct-GGUF")
    assert "deepseek-coder-6.7b-instruct.Q4_K_M.gguf, deepseek-coder-6.7b-instruct.Q8_0.gguf" in str(e.value)


def test_offline_cache_split_model(offline_cache, split_tiny):
    _whole, parts = split_tiny
    snap = add_repo(offline_cache, "org/tiny-GGUF", {f"Q8_0/{p.name}": p for p in parts})
    first = resolve_model("org/tiny-GGUF:Q8_0")
    assert first == str(snap / "Q8_0" / parts[0].name)
    assert split_parts(first) == [str(snap / "Q8_0" / p.name) for p in parts]
    assert len(open_gguf(first).tensors) == len(open_gguf(parts[0]).tensors)


def test_offline_missing_parts_and_missing_repo(offline_cache, split_tiny):
    _whole, parts = split_tiny
    add_repo(offline_cache, "org/half-GGUF", {parts[0].name: parts[0], parts[2].name: parts[2]})
    with pytest.raises(HubUnreachableError) as e:
        resolve_model("org/half-GGUF")
    assert "HF_HUB_OFFLINE is set" in str(e.value)
    with pytest.raises(HubUnreachableError) as e:
        resolve_model("org/nothing-GGUF:Q4_K_M")
    msg = str(e.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg and "local .gguf path" in msg and str(offline_cache) in msg
    assert isinstance(e.value, ggrun.ModelNotFoundError)


def test_offline_error_names_the_cached_file(offline_cache, smollm2_path):
    snap = add_repo(offline_cache, "org/smol-GGUF", {"smol.Q4_1.gguf": smollm2_path})
    with pytest.raises(HubUnreachableError) as e:
        resolve_model("org/smol-GGUF:Q4_K_M")
    assert str(snap / "smol.Q4_1.gguf") in str(e.value)


def test_offline_with_env_var_in_a_fresh_process(tmp_path, smollm2_path):
    """HF_HUB_OFFLINE=1 and HF_HUB_CACHE as a user sets them, read by huggingface_hub at import."""
    snap = add_repo(tmp_path, "org/smol-GGUF", {"smol-Q4_1.gguf": smollm2_path})
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    code = "import ggrun; print(ggrun.resolve_model('org/smol-GGUF:Q4_1'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(snap / "smol-Q4_1.gguf")


# --- the Hub, unreachable ----------------------------------------------------------------

def test_unreachable_hub_uses_the_cache(unreachable_hub, smollm2_path, caplog):
    snap = add_repo(unreachable_hub, "org/smol-GGUF", {"smol.Q4_1.gguf": smollm2_path})
    assert resolve_model("org/smol-GGUF:Q4_1") == str(snap / "smol.Q4_1.gguf")
    assert "can't reach the Hugging Face Hub" in caplog.text


def test_unreachable_hub_error_is_one_line(unreachable_hub):
    with pytest.raises(HubUnreachableError) as e:
        resolve_model("TheBloke/deepseek-coder-33B-instruct-GGUF:Q4_K_M")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("can't reach the Hugging Face Hub")
    assert "pass a local .gguf path" in msg and "ggrun download TheBloke/deepseek-coder-33B-instruct-GGUF" in msg


# --- the Hub, online (huggingface_hub's calls stood in for) ------------------------------

@pytest.fixture
def fake_hub(offline_cache, monkeypatch, tmp_path):
    """Online: model_info lists FILES; hf_hub_download writes the file and records the call."""
    import huggingface_hub
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    calls = []

    def model_info(self, repo_id, revision=None, token=None, timeout=None, **kw):
        if repo_id != "org/x-GGUF":
            from huggingface_hub.errors import RepositoryNotFoundError

            raise RepositoryNotFoundError("404", response=SimpleNamespace(status_code=404, headers={}, request=None))
        return SimpleNamespace(sha="c" * 40, siblings=[SimpleNamespace(rfilename=f) for f in FILES])

    def hf_hub_download(repo_id, filename, revision=None, local_dir=None, **kw):
        calls.append((repo_id, filename, revision))
        p = Path(local_dir or tmp_path / "dl") / filename
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"GGUF")
        return str(p)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return calls


def test_online_downloads_every_split_part(fake_hub, tmp_path):
    path = resolve_model("org/x-GGUF:Q6_K")
    assert path.endswith("big/x-Q6_K-00001-of-00002.gguf")
    assert [f for _r, f, _v in fake_hub] == ["big/x-Q6_K-00001-of-00002.gguf", "big/x-Q6_K-00002-of-00002.gguf"]
    assert all(v == "c" * 40 for _r, _f, v in fake_hub)         # pinned to the listed commit


def test_online_missing_repo(fake_hub):
    with pytest.raises(ggrun.ModelNotFoundError, match="no such repository on the Hugging Face Hub"):
        resolve_model("org/typo-GGUF:Q4_K_M")


# --- ggrun download ---------------------------------------------------------------------

def _download(*args, cache, offline=True, timeout=120):
    env = {"HF_HUB_CACHE": str(cache), "PATH": "/usr/bin:/bin", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    return subprocess.run([sys.executable, "-m", "ggrun", "download", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_download_cli_offline(tmp_path, smollm2_path, split_tiny):
    _whole, parts = split_tiny
    snap = add_repo(tmp_path, "org/x-GGUF", {"x.Q4_1.gguf": smollm2_path, **{p.name: p for p in parts}})
    r = _download("org/x-GGUF:Q4_1", cache=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(snap / "x.Q4_1.gguf")
    r = _download("org/x-GGUF", parts[0].name, cache=tmp_path)
    assert r.stdout.strip() == str(snap / parts[0].name)
    out = tmp_path / "here"
    r = _download("org/x-GGUF", "x.Q4_1.gguf", "--local-dir", str(out), cache=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out / "x.Q4_1.gguf").stat().st_size == Path(smollm2_path).stat().st_size
    r = _download("org/x-GGUF", cache=tmp_path)                         # two models: which one?
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "x.Q4_1.gguf" in r.stderr and parts[0].name in r.stderr


def test_download_cli_unreachable_is_one_line(tmp_path):
    r = _download("org/x-GGUF:Q4_K_M", cache=tmp_path, offline=False)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "can't reach the Hugging Face Hub" in lines[0] and "Traceback" not in r.stderr


def test_download_cli_conflict(tmp_path):
    r = _download("org/x-GGUF:Q4_K_M", "--include", "*Q8_0*", cache=tmp_path)
    assert r.returncode == 2 and "pass one of them" in r.stderr


def test_download_include_takes_every_part(fake_hub, capsys):
    from ggrun.cli import main

    assert main(["download", "org/x-GGUF", "--include", "*Q6_K-00002*", "-q"]) == 0
    assert sorted(f for _r, f, _v in fake_hub) == ["big/x-Q6_K-00001-of-00002.gguf", "big/x-Q6_K-00002-of-00002.gguf"]
    assert capsys.readouterr().out.strip().endswith("big/x-Q6_K-00001-of-00002.gguf")     # one line: the first part


def test_download_errors_become_one_line(fake_hub, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def no_answer(*a, **kw):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub ...")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_answer)
    with pytest.raises(HubUnreachableError, match="can't reach the Hugging Face Hub"):
        resolve_model("org/x-GGUF:Q8_0")

    def read_only(*a, **kw):
        raise PermissionError(13, "Permission denied", "/ro/cache/blobs/x")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", read_only)
    with pytest.raises(ggrun.GGRunError, match="can't write to the Hugging Face cache"):
        resolve_model("org/x-GGUF:Q8_0")
