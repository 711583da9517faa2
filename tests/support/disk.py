"""A small disk for tests that fill it: a tmpfs of a given size, mounted for one test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``8m``), mounted for the block; needs root, or sudo without a password.
    Its folder is in the system's temporary folder, which other users (PostgreSQL's) can reach."""
    path = Path(tempfile.mkdtemp(prefix="flowdeck-disk-"))
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    mounted = subprocess.run(
        [*sudo, "mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(f"a full disk needs a tmpfs, which needs root or sudo here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run([*sudo, "umount", "-l", str(path)], check=True)
        path.rmdir()


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
