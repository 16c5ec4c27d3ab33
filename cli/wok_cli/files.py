"""Files that readers poll: they must appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomically(directory: Path, name: str, content: bytes, *, durable: bool = True) -> Path:
    """Write `content` to `directory/name` under a hidden temporary name, then rename it
    (a rename inside one folder is atomic). The file is private to the owner (0600).

    `durable=False` leaves out the fsync: a killed process loses nothing written, only a
    crash of the machine could (the SMTP sink's mails: the fsync was a third of its CPU)."""
    temporary = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with memoryview(content) as view:
            written = 0
            while written < len(view):
                written += os.write(descriptor, view[written:])
        if durable:
            os.fsync(descriptor)
        os.close(descriptor)
        descriptor = -1
        target = directory / name
        os.replace(temporary, target)
    except BaseException:
        if descriptor >= 0:
            os.close(descriptor)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target
