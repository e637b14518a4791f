"""One process per data directory: an exclusive lock on a file in it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from lookalike.core.errors import DataDirLocked

LOCK_FILE = ".lock"


def lock_directory(root: Path, what: str) -> IO[str]:
    """Lock `root` for this process until the returned file is closed; `what` names the data
    in the error a second process (or a second lock in this one) gets."""
    lock_file = open(root / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held until close()
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "another process"
        lock_file.close()
        raise DataDirLocked(
            f"{what} in {root} is in use by {holder}; stop it (e.g. `lookalike serve`) "
            "or point this command at another data directory"
        ) from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"pid {os.getpid()}\n")
    lock_file.flush()
    return lock_file
