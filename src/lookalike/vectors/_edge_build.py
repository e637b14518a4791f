"""Child process that builds the HNSW index of one Qdrant Edge shard copy.

`EdgeShard.optimize()` holds the GIL for the whole build (minutes at 100k vectors), so
`QdrantEdgeIndex` never calls it in the server process: it copies the live shard and runs
`python -m lookalike.vectors._edge_build SHARD_DIR` on the copy, then swaps the result in.

Exit status 0 means the copy at SHARD_DIR is indexed, flushed and closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Linux: end this process when the server dies, instead of building for nobody."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        sys.exit(1)


def build(shard_dir: str, *, niceness: int = 10, parent: int | None = None) -> None:
    """Index every segment of the shard at `shard_dir` (which no other process may hold).
    With `parent`, the process ends when that one does."""
    from qdrant_edge import EdgeShard

    if parent is not None:
        _die_with_parent(parent)
    # Lower priority so the server's searches get the CPU first; the build takes the rest.
    with contextlib.suppress(OSError):
        os.nice(niceness)
    shard = EdgeShard.load(shard_dir)
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 4:
        print(
            "usage: python -m lookalike.vectors._edge_build SHARD_DIR [NICENESS [PARENT_PID]]",
            file=sys.stderr,
        )
        return 2
    build(
        argv[1],
        niceness=int(argv[2]) if len(argv) > 2 else 10,
        parent=int(argv[3]) if len(argv) > 3 else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
