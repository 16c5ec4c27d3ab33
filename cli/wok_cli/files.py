"""Files that readers poll: they must appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(directory: Path, name: str, content: bytes) -> Path:
    """Write `content` to `directory/name` under a hidden temporary name, then rename it
    (a rename inside one folder is atomic). The file is private to the owner (0600)."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        target = directory / name
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target
