"""File hashes, for the layers that identify files: model fingerprints, downloads, state files."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 4 * 1024 * 1024


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks (a multi-gigabyte model never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()
