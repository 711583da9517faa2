"""A small disk for tests that fill it: a tmpfs of a given size, mounted for one test."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``8m``) at ``path``; needs root, or sudo without a password."""
    path.mkdir(parents=True, exist_ok=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    mounted = subprocess.run(
        [*sudo, "mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs, which needs root or sudo here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run([*sudo, "umount", "-l", str(path)], check=True)


def fill(path: Path, keep_bytes: int) -> Path:
    """A file that takes all of the disk at ``path`` but ``keep_bytes``; delete it to free the space."""
    filler = path / "filler"
    free = shutil.disk_usage(path).free - keep_bytes
    with filler.open("wb") as out:
        chunk = b"\0" * (1 << 20)
        while free > 0:
            written = out.write(chunk[: min(free, len(chunk))])
            free -= written
    return filler
