"""``ggrun download REPO [FILE] [--include PATTERN] [--local-dir DIR]``: fetch GGUF files from the Hub.

Prints the local path of each model fetched (the first part of a split model), one a
line, so ``ggrun run -m "$(ggrun download REPO:Q4_K_M)"`` works; progress bars go to stderr. ``REPO:QUANT`` picks the file of that quant; a split model's
parts come together. Files land in the Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``)
unless ``--local-dir`` is given.
"""

from __future__ import annotations

import argparse
import fnmatch
import os


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "download", help="download GGUF files from the Hugging Face Hub",
        description="Download a model from the Hugging Face Hub into its cache (or --local-dir) and print its path. "
                    "REPO may be org/name or org/name:QUANT (e.g. TheBloke/deepseek-coder-6.7B-instruct-GGUF:Q4_K_M).")
    p.add_argument("repo", metavar="REPO", help="org/name or org/name:QUANT")
    p.add_argument("files", metavar="FILE", nargs="*", help="file(s) of the repository (a glob such as '*Q4_K_M.gguf' works)")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="download every file matching PATTERN (repeatable), e.g. --include '*Q4_K_M*'")
    p.add_argument("--local-dir", default=None, metavar="DIR", help="put the files in DIR instead of the cache")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="the Hugging Face cache folder (default: HF_HUB_CACHE)")
    p.add_argument("--revision", default=None, help="a branch, tag or commit (default: main)")
    p.add_argument("--token", default=None, help="a Hugging Face token (default: HF_TOKEN or `hf auth login`)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)


def cmd_download(args: argparse.Namespace) -> int:
    from ..errors import BadArgumentError
    from ..hub import (HubSpec, _check_parts, _hf, _not_reachable, cached_snapshot, describe, download_file,
                       gguf_models, hub_cache_dir, hub_download, list_hub_files, parse_hub_spec)

    spec = parse_hub_spec(args.repo)
    if spec is None or spec.filename:
        raise BadArgumentError(f"'{args.repo}' is not a Hub repository: expected org/name or org/name:QUANT")
    if spec.quant and (args.files or args.include):
        raise BadArgumentError(f"'{args.repo}' picks quant {spec.quant}; FILE and --include pick files: pass one of them")
    if args.quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        try:
            _hf().utils.disable_progress_bars()
        except AttributeError:  # pragma: no cover - older huggingface_hub
            pass
    kw = dict(revision=args.revision, token=args.token, cache_dir=args.cache_dir)
    if args.include:
        files, commit, why = list_hub_files(spec.repo, args.revision, args.token, cache_dir=args.cache_dir)
        if why is not None:
            snap, cached = cached_snapshot(spec.repo, args.revision, args.cache_dir)
            raise _not_reachable(HubSpec(spec.repo, filename=args.include[0]), why, hub_cache_dir(args.cache_dir),
                                 cached, snap)
        chosen = {f for f in files if any(fnmatch.fnmatch(f, pat) or fnmatch.fnmatch(os.path.basename(f), pat)
                                          for pat in args.include)}
        if not chosen:
            raise BadArgumentError(f"{spec.repo}: no file matches {', '.join(args.include)}; its GGUF files: "
                                   f"{', '.join(describe(u) for u in gguf_models(files)) or 'none'}")
        shown = sorted(chosen)
        for unit in gguf_models(files):      # a split model: every part, even those the pattern left out
            if len(unit) > 1 and chosen & set(unit):
                _check_parts(spec.repo, unit)
                chosen |= set(unit)
                shown = sorted({f for f in shown if f not in unit} | {unit[0]})
        got = {name: download_file(spec.repo, name, revision=commit or args.revision, token=args.token,
                                   cache_dir=args.cache_dir, local_dir=args.local_dir)
               for name in sorted(chosen)}
        paths = [got[f] for f in shown]
    elif args.files:
        paths = [hub_download(HubSpec(spec.repo, filename=name), local_dir=args.local_dir, **kw)[0]
                 for name in args.files]
    else:
        paths = hub_download(spec, local_dir=args.local_dir, **kw)[:1]
    for p in dict.fromkeys(paths):
        print(p)
    return 0
