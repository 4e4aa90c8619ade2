"""Lay out a real huggingface_hub cache on disk (for offline tests of Hub resolution).

``models--ORG--NAME/blobs/<sha256>`` holds the bytes, ``snapshots/<commit>/<path>`` links
to the blob (relative symlink, as huggingface_hub makes them) and ``refs/main`` names the commit.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def add_repo(cache: Path, repo: str, files: dict[str, bytes | str | os.PathLike], commit: str | None = None) -> Path:
    """Put ``files`` (repo path → bytes, or a local file to link) into ``cache`` as ``repo``
    at ``commit`` (default: derived from the names), pointed to by refs/main. Returns the snapshot folder."""
    root = cache / ("models--" + repo.replace("/", "--"))
    commit = commit or hashlib.sha1(("|".join(sorted(files)) + repo).encode()).hexdigest()
    snap = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            blob = root / "blobs" / hashlib.sha256(content).hexdigest()
            if not blob.exists():
                blob.write_bytes(content)
        else:
            src = Path(content)
            blob = root / "blobs" / hashlib.sha256(f"{src.resolve()}:{src.stat().st_size}".encode()).hexdigest()
            if not blob.exists():
                try:
                    os.link(src, blob)
                except OSError:
                    blob.symlink_to(src.resolve())
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs" / "main").write_text(commit)
    return snap
