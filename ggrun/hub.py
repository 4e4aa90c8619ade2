"""Find a model by name: a local file or folder, a Hugging Face Hub repository, ``repo:QUANT``.

``resolve_model(spec)`` turns what a user typed after ``-m`` into the path of a GGUF file:

- ``model.gguf``: a local file (the first part of a split model finds the other parts);
- ``models/``: a local folder holding one GGUF model (``models/:Q4_K_M`` picks by quant);
- ``org/name``: a Hub repository holding one GGUF model;
- ``org/name:Q4_K_M``: the file of that quant in the repository (``*Q4_K_M.gguf``);
- ``org/name/path/file.gguf``: that file of the repository.

Hub files go through ``huggingface_hub`` and its cache (``HF_HOME``, ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_TOKEN``, its progress bars), so a file downloaded once is never
fetched again, and a file that other tools downloaded is found. When the Hub can't be
reached, cached files are used; when they are not there either, the error says what to do.

Split models (``name-00001-of-00003.gguf``) are found and fetched together;
``open_gguf(path)`` opens all their parts as one ``GGUFFile``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import BadArgumentError, GGRunError, GGUFFormatError, ModelNotFoundError

log = logging.getLogger("ggrun")

SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")   # org/name, as the Hub spells ids
QUANT_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


class HubUnreachableError(ModelNotFoundError):
    """The Hub can't be reached (offline mode, no network) and the model isn't in the cache."""


class AmbiguousModelError(BadArgumentError):
    """A repository or folder holds several GGUF models and none was picked. ``candidates`` lists them."""

    def __init__(self, message: str, candidates: Sequence[str] = ()):
        super().__init__(message)
        self.candidates = list(candidates)


class SplitModelError(ModelNotFoundError):
    """A split GGUF model with a part missing, or named by a part other than the first."""


class ConflictingArgumentsError(BadArgumentError):
    """Two arguments that contradict each other (a file path and another model_file, …)."""


# --- GGUF file names ---------------------------------------------------------------------

def gguf_models(files: Sequence[str]) -> list[list[str]]:
    """Group file names into GGUF models: each is ``[file]`` or the parts of one split set,
    first part first. Other files are left out; so are multimodal projectors (``mmproj``),
    which are not language models."""
    singles: list[list[str]] = []
    splits: dict[tuple[str, str], dict[int, str]] = {}
    for f in files:
        if not f.lower().endswith(".gguf") or "mmproj" in Path(f).name.lower():
            continue
        m = SPLIT_RE.match(f)
        if m:
            splits.setdefault((m["stem"], m["count"]), {})[int(m["no"])] = f
        else:
            singles.append([f])
    units = singles + [[parts[i] for i in sorted(parts)] for parts in splits.values()]
    return sorted(units, key=lambda u: u[0])


def _stem(name: str) -> str:
    m = SPLIT_RE.match(name)
    return m["stem"] if m else (name[:-5] if name.lower().endswith(".gguf") else name)


def describe(unit: Sequence[str]) -> str:
    """'file.gguf', or 'name-00001-of-00003.gguf (3 parts)'."""
    return unit[0] if len(unit) == 1 else f"{unit[0]} ({len(unit)} parts)"


def _listing(units: Sequence[Sequence[str]]) -> str:
    return ", ".join(describe(u) for u in units) if units else "none"


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _pick_one(hits: list[list[str]], what: str | None, where: str, *, units: Sequence[Sequence[str]] = (),
              no_match: str = "", then: str = "name one of them") -> list[str]:
    """The one model in ``hits``; else ModelNotFoundError (none) or AmbiguousModelError (several,
    listed, with ``candidates``), each one line.

    what: what picked ``hits`` (``"'*Q4_K_M.gguf'"``, ``"quant 'Q4_K_M'"``), or None when nothing
    did and ``hits`` are all the GGUF models of ``where``. no_match: how 'no GGUF file …' goes on
    when nothing matched (``"matches '*Q4_K_M.gguf'"``), followed by ``units``, all the GGUF models
    there. then: what to do, after the list of the several hits."""
    if not hits:
        raise ModelNotFoundError(f"{where}: no GGUF file there" if what is None else
                                 f"{where}: no GGUF file {no_match}; its GGUF files: {_listing(units)}")
    if len(hits) > 1:
        head = (f"{where} holds {len(hits)} GGUF models" if what is None else
                f"{where}: {what} matches {len(hits)} models")
        raise AmbiguousModelError(f"{head}: {_listing(hits)}; {then}", [u[0] for u in hits])
    return hits[0]


def select_model(files: Sequence[str], where: str, *, quant: str | None = None,
                 filename: str | None = None) -> list[str]:
    """Pick one GGUF model among ``files`` (names relative to a repo or folder ``where``).

    ``filename``: an exact name or a glob (``*Q4_K_M.gguf``), matched against the path and
    the base name; a split model matches when any of its parts does. ``quant``: the model
    whose name ends with it (``Q4_K_M`` matches ``x.Q4_K_M.gguf`` and ``x-Q4_K_M-00001-of-00002.gguf``).
    Neither: the only GGUF model there. Returns the parts (one name for a single file)."""
    units = gguf_models(files)
    if filename is not None:
        if not _has_glob(filename) and filename in files and filename.lower().endswith(".gguf"):
            hits = [u for u in units if filename in u] if SPLIT_RE.match(filename) else [[filename]]
        else:
            def match(name: str) -> bool:
                return fnmatch.fnmatch(name, filename) or fnmatch.fnmatch(Path(name).name, filename)

            hits = [u for u in gguf_models(files + [f for f in files if "mmproj" in f.lower() and match(f)])
                    if any(match(p) for p in u)]
        return _pick_one(hits, f"'{filename}'", where, units=units, no_match=f"matches '{filename}'")
    if quant is not None:
        q = re.escape(quant)
        pat = re.compile(rf"(?:^|[^A-Za-z0-9]){q}$", re.IGNORECASE)
        hits = [u for u in units if pat.search(Path(_stem(u[0])).name)]
        if not hits:   # quant anywhere in the name, as a whole token
            pat = re.compile(rf"(?<![A-Za-z0-9]){q}(?![A-Za-z0-9_])", re.IGNORECASE)
            hits = [u for u in units if pat.search(u[0])]
        return _pick_one(hits, f"quant '{quant}'", where, units=units, no_match=f"of quant '{quant}'",
                         then="name the file instead")
    return _pick_one(units, None, where, then=f"pick one (a file name, a glob such as '*Q4_K_M.gguf', "
                                             f"or the '{where}:QUANT' shorthand)")


# --- local files ---------------------------------------------------------------------------

def split_parts(path: str | os.PathLike[str]) -> list[str]:
    """All parts of the split model whose first part is ``path`` (``[path]`` for a plain file).
    Raises SplitModelError naming the missing parts, or the first part if given another."""
    p = Path(path)
    m = SPLIT_RE.match(p.name)
    if not m:
        return [str(p)]
    count, no = int(m["count"]), int(m["no"])
    fmt = p.name[len(m["stem"]):]                       # '-00001-of-00003.gguf', case kept
    names = [f"{m['stem']}-{i:05d}{fmt[6:10]}{count:05d}{fmt[-5:]}" for i in range(1, count + 1)]
    parts = [p.with_name(n) for n in names]
    if no != 1:
        raise SplitModelError(f"{p}: part {no} of {count} of a split model: pass the first part, {parts[0]}")
    missing = [str(q.name) for q in parts if not q.exists()]
    if missing:
        raise SplitModelError(f"{p}: split model of {count} parts, but {len(missing)} are missing "
                              f"from {p.parent}: {', '.join(missing)}")
    return [str(q) for q in parts]


def open_gguf(path: str | os.PathLike[str]):
    """Open a GGUF file, or all parts of a split model (given its first part), as one
    ``GGUFFile``: metadata from the first part, tensors from every part (each a view into
    its own part's map). Checks ``split.count``, ``split.no`` and ``split.tensors.count``."""
    from .gguf_file import GGUFFile

    paths = split_parts(path)
    first = GGUFFile(paths[0])
    if len(paths) == 1:
        return first
    count = first.metadata.get("split.count")
    if count is not None and int(count) != len(paths):
        raise GGUFFormatError(f"{paths[0]}: split.count is {count} but the file names say {len(paths)} parts")
    parts = [first]
    for i, p in enumerate(paths[1:], start=1):
        f = GGUFFile(p)
        no = f.metadata.get("split.no")
        if no is not None and int(no) != i:
            raise GGUFFormatError(f"{p}: split.no is {no}, expected {i}")
        for name, t in f.tensors.items():
            if name in first.tensors:
                raise GGUFFormatError(f"{p}: tensor '{name}' is also in an earlier part")
            first.tensors[name] = t
        parts.append(f)
    want = first.metadata.get("split.tensors.count")
    if want is not None and int(want) != len(first.tensors):
        raise GGUFFormatError(f"{paths[0]}: split.tensors.count is {want} but the {len(paths)} parts hold "
                              f"{len(first.tensors)} tensors")
    first.parts = parts
    first.split_paths = paths
    first.file_size = sum(f.file_size for f in parts)
    return first


def _local_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf") if p.is_file())


# --- the Hub -------------------------------------------------------------------------------

@dataclass(frozen=True)
class HubSpec:
    """A model named on the Hub: ``repo``, and at most one of ``quant`` and ``filename``."""

    repo: str
    quant: str | None = None
    filename: str | None = None


def parse_hub_spec(spec: str) -> HubSpec | None:
    """``org/name``, ``org/name:QUANT`` or ``org/name/path/file.gguf`` → HubSpec; None if
    ``spec`` doesn't look like one (call this only for specs that are not local paths)."""
    s = spec.strip()
    for prefix in ("hf://", "hf.co/", "huggingface.co/", "https://huggingface.co/"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    quant = None
    if ":" in s:
        s, quant = s.rsplit(":", 1)
        if not quant or not QUANT_RE.match(quant):
            return None
    parts = s.split("/")
    if len(parts) == 2 and REPO_RE.match(s) and not s.lower().endswith(".gguf"):
        return HubSpec(s, quant=quant)
    if len(parts) > 2 and quant is None and s.lower().endswith(".gguf") and REPO_RE.match("/".join(parts[:2])):
        return HubSpec("/".join(parts[:2]), filename="/".join(parts[2:]))
    return None


def _hf():
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors  # noqa: F401
    except ImportError:  # pragma: no cover - a core dependency
        raise ModelNotFoundError("models from the Hugging Face Hub need huggingface_hub: pip install huggingface_hub") from None
    return huggingface_hub


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The huggingface_hub cache folder (HF_HUB_CACHE, else HF_HOME/hub)."""
    return Path(cache_dir) if cache_dir else Path(_hf().constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set."""
    c = _hf().constants
    return bool(c.is_offline_mode() if hasattr(c, "is_offline_mode") else c.HF_HUB_OFFLINE)


def cached_snapshot(repo: str, revision: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path | None, list[str]]:
    """The cached snapshot folder of ``repo`` at ``revision`` (default: the ``main`` ref, else the
    newest snapshot) and the files it holds, read from huggingface_hub's cache layout
    ``models--ORG--NAME/{refs/REV, snapshots/COMMIT/…, blobs/…}``; (None, []) if none."""
    root = hub_cache_dir(cache_dir) / ("models--" + repo.replace("/", "--"))
    snaps = root / "snapshots"
    if not snaps.is_dir():
        return None, []
    rev = revision or "main"
    ref = root / "refs" / rev
    if ref.is_file():
        snap = snaps / ref.read_text().strip()
    elif (snaps / rev).is_dir():
        snap = snaps / rev
    elif revision is None:
        found = sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if not found:
            return None, []
        snap = found[-1]
    else:
        return None, []
    if not snap.is_dir():
        return None, []
    files = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    return snap, files


def _unreachable_reason(e: BaseException) -> str | None:
    """A short reason if ``e`` means 'the Hub could not be reached', else None."""
    errors = _hf().errors
    if isinstance(e, errors.OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(e, errors.LocalEntryNotFoundError):     # hf_hub_download: no answer, and not cached
        return "no answer from it"
    if isinstance(e, PermissionError):
        return None
    if isinstance(e, errors.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        return f"HTTP {status}" if status is None or status >= 500 or status == 429 else None
    if isinstance(e, (OSError, TimeoutError)) and not isinstance(e, errors.EntryNotFoundError):
        return str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    name = type(e).__name__
    if any(k in name for k in ("Connect", "Timeout", "Network", "Transport", "Proxy", "Protocol")):
        return f"{name}: {str(e).splitlines()[0][:120]}" if str(e) else name
    return None


def _hub_error(e: BaseException, repo: str, revision: str | None) -> GGRunError | None:
    """One-line errors for the Hub's answers that are not network failures."""
    errors = _hf().errors
    if isinstance(e, PermissionError):
        return GGRunError(f"can't write to the Hugging Face cache ({e.filename or e}): set HF_HOME or HF_HUB_CACHE "
                          f"to a folder you can write, or pass --local-dir")
    if isinstance(e, errors.EntryNotFoundError) and not isinstance(e, errors.LocalEntryNotFoundError):
        return ModelNotFoundError(f"{repo}: the Hub has no such file ({str(e).splitlines()[0][:160]})")
    if isinstance(e, errors.GatedRepoError):
        return ModelNotFoundError(f"{repo} is a gated repository: accept its terms on huggingface.co, then log in "
                                  f"(hf auth login) or set HF_TOKEN")
    if isinstance(e, errors.RepositoryNotFoundError):
        return ModelNotFoundError(f"{repo}: no such repository on the Hugging Face Hub (if it is private, "
                                  f"log in with `hf auth login` or set HF_TOKEN)")
    if isinstance(e, errors.RevisionNotFoundError):
        return ModelNotFoundError(f"{repo}: no revision '{revision}' on the Hugging Face Hub")
    if isinstance(e, errors.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return ModelNotFoundError(f"{repo}: the Hub refused access (HTTP {status}): log in with `hf auth login` "
                                      f"or set HF_TOKEN")
    return None


def _want(spec: HubSpec) -> str:
    return f"{spec.repo}:{spec.quant}" if spec.quant else (f"{spec.repo}/{spec.filename}" if spec.filename else spec.repo)


def _not_reachable(spec: HubSpec, why: str, cache: Path, cached: Sequence[str],
                   snap: Path | None) -> HubUnreachableError:
    """The one line that says the model can't be had, and what to do instead."""
    want = _want(spec)
    include = f"*{spec.quant}*" if spec.quant else (spec.filename or "*.gguf")
    units = gguf_models(cached)
    have = ("; the cache holds " + ", ".join(str(snap / u[0]) for u in units)) if units and snap is not None else ""
    if why == OFFLINE:
        return HubUnreachableError(
            f"HF_HUB_OFFLINE is set and {want} is not in the Hugging Face cache ({cache}){have}: pass a local .gguf "
            f"path, or unset HF_HUB_OFFLINE to download it")
    if why == LOCAL_ONLY:
        return HubUnreachableError(
            f"local_files_only is set and {want} is not in the Hugging Face cache ({cache}){have}: pass a local .gguf "
            f"path, or drop local_files_only to download it")
    return HubUnreachableError(
        f"can't reach the Hugging Face Hub ({why}) to get {want}, and it is not in the cache ({cache}){have}: "
        f"pass a local .gguf path, or fetch it while the Hub is reachable: "
        f"ggrun download {spec.repo} --include '{include}'")


OFFLINE, LOCAL_ONLY = "HF_HUB_OFFLINE is set", "local_files_only"


def list_hub_files(repo: str, revision: str | None = None, token: str | bool | None = None,
                   local_files_only: bool = False,
                   cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], str | None, str | None]:
    """Files of ``repo``: (names, commit, why_offline). Asks the Hub (one request, no retries);
    offline or unreachable: lists the cached snapshot and says why in ``why_offline``."""
    hf = _hf()
    if local_files_only or hub_offline():
        _snap, files = cached_snapshot(repo, revision, cache_dir)
        return files, None, (LOCAL_ONLY if local_files_only else OFFLINE)
    try:
        info = hf.HfApi().model_info(repo, revision=revision, token=token, timeout=15)
    except Exception as e:  # noqa: BLE001 - sorted below: Hub answers vs. network failures
        err = _hub_error(e, repo, revision)
        if err is not None:
            raise err from None
        reason = _unreachable_reason(e)
        if reason is None:
            raise
        _snap, files = cached_snapshot(repo, revision, cache_dir)
        return files, None, reason
    return sorted(s.rfilename for s in (info.siblings or [])), info.sha, None


def hub_download(spec: HubSpec, *, revision: str | None = None, token: str | bool | None = None,
                 local_files_only: bool = False, cache_dir: str | os.PathLike[str] | None = None,
                 local_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Fetch the model ``spec`` names (every part of a split model) into the Hub cache, or into
    ``local_dir``; return the local paths, first part first. Uses cached files when the Hub
    is unreachable; raises HubUnreachableError with what to do when they are not there."""
    files, commit, why = list_hub_files(spec.repo, revision, token, local_files_only, cache_dir)
    cache = hub_cache_dir(cache_dir)
    if why is not None:
        snap, cached = cached_snapshot(spec.repo, revision, cache_dir)
        try:
            unit = select_model(cached, spec.repo, quant=spec.quant, filename=spec.filename)
            _check_parts(spec.repo, unit)
        except ModelNotFoundError:
            raise _not_reachable(spec, why, cache, cached, snap) from None
        if why not in (OFFLINE, LOCAL_ONLY):
            log.warning("ggrun: can't reach the Hugging Face Hub (%s): using the cached %s", why, snap / unit[0])
        if local_dir is None:
            return [str(snap / p) for p in unit]
        out = []
        for p in unit:                      # offline with --local-dir: copy from the cache
            dest = Path(local_dir) / p
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snap / p, dest)
            out.append(str(dest))
        return out
    unit = select_model(files, spec.repo, quant=spec.quant, filename=spec.filename)
    _check_parts(spec.repo, unit)
    return [download_file(spec.repo, name, revision=commit or revision, token=token, cache_dir=cache_dir,
                          local_dir=local_dir, local_files_only=local_files_only, want=spec) for name in unit]


def download_file(repo: str, name: str, *, revision: str | None = None, token: str | bool | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, local_dir: str | os.PathLike[str] | None = None,
                  local_files_only: bool = False, want: HubSpec | None = None) -> str:
    """``hf_hub_download`` of one file (its progress bar on stderr), with the Hub's errors
    turned into one-line GGRunErrors."""
    try:
        return _hf().hf_hub_download(repo, name, revision=revision, token=token, cache_dir=cache_dir,
                                     local_dir=local_dir, local_files_only=local_files_only)
    except Exception as e:  # noqa: BLE001 - sorted below
        err = _hub_error(e, repo, revision)
        if err is not None:
            raise err from None
        reason = _unreachable_reason(e)
        if reason is None:
            raise
        snap, cached = cached_snapshot(repo, revision, cache_dir)
        raise _not_reachable(want or HubSpec(repo, filename=name), reason, hub_cache_dir(cache_dir), cached,
                             snap) from None


def _check_parts(where: str, unit: Sequence[str]) -> None:
    m = SPLIT_RE.match(unit[0])
    if m and len(unit) != int(m["count"]):
        have = {int(SPLIT_RE.match(p)["no"]) for p in unit}
        missing = [i for i in range(1, int(m["count"]) + 1) if i not in have]
        raise SplitModelError(f"{where}: split model {unit[0]} has {m['count']} parts, but parts "
                              f"{', '.join(map(str, missing))} are missing")


# --- the one entry point -------------------------------------------------------------------

def find_model(spec: str | os.PathLike[str] | None, filename: str | None = None, *,
               revision: str | None = None, token: str | bool | None = None, local_files_only: bool = False,
               cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Path of the GGUF file (the first part, for a split model) that ``spec`` names.

    spec: None (the embedded default model), a local file or folder, ``folder:QUANT``, a Hub
    repository ``org/name``, ``org/name:QUANT`` or ``org/name/path/file.gguf``.
    filename: with a folder or a repository, the file to take (exact, or a glob such as
    ``*Q4_K_M.gguf``); not allowed with a file path or a ``:QUANT`` spec.
    """
    if spec is None:
        if filename is not None:
            raise ConflictingArgumentsError(f"a file name ('{filename}') needs a repository or folder to look in")
        from .default_model import default_model_path

        return default_model_path()
    s = os.fspath(spec)
    p = Path(s).expanduser()
    if p.is_file():
        if filename is not None and Path(filename).name != p.name:
            raise ConflictingArgumentsError(f"{s} is a file, and model_file/filename '{filename}' names another: pass one of them")
        return split_parts(p)[0]
    quant = None
    if p.is_dir():
        folder = p
    elif ":" in s and Path(s.rsplit(":", 1)[0]).expanduser().is_dir():
        folder, quant = Path(s.rsplit(":", 1)[0]).expanduser(), s.rsplit(":", 1)[1]
    else:
        folder = None
    if folder is not None:
        if quant and filename:
            raise ConflictingArgumentsError(f"'{s}' picks quant {quant} and filename '{filename}' picks a file: pass one of them")
        unit = select_model(_local_files(folder), str(folder), quant=quant or None, filename=filename)
        return split_parts(folder / unit[0])[0]
    hub = parse_hub_spec(s)
    if hub is None:
        raise ModelNotFoundError(f"{s}: no such file" + ("" if s.lower().endswith(".gguf") or "/" not in s else
                                                        " or folder, and not a Hub repository (org/name)"))
    if filename is not None:
        if hub.quant or hub.filename:
            raise ConflictingArgumentsError(f"'{s}' already picks a file, and model_file/filename '{filename}' picks another: "
                                   f"pass one of them")
        hub = HubSpec(hub.repo, filename=filename)
    return hub_download(hub, revision=revision, token=token, local_files_only=local_files_only,
                        cache_dir=cache_dir)[0]


def resolve_model(spec: str | None) -> str:
    """What ``-m``/``model=`` accepts everywhere → a local GGUF path (see ``find_model``)."""
    return find_model(spec)
