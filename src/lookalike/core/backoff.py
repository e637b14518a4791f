"""How long to wait before trying a remote service again, for every client that retries.

Exponential and capped, with half of each wait random, so that many clients whose requests
failed together do not all come back together; and the wait a 429 or 503 names in its
`Retry-After` header (seconds, or an HTTP date).
"""

from __future__ import annotations

import email.utils
import random
import time

# 2**30 times any base is past every cap; beyond it a float power would overflow.
_MAX_DOUBLINGS = 30


def jittered_backoff(attempt: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait before try `attempt + 1` (`attempt` from 1): between half and all of
    `base_s` doubled per attempt, at most `cap_s`."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempt - 1, 0), _MAX_DOUBLINGS))
    return random.uniform(ceiling / 2, ceiling)


def retry_after_seconds(value: str | None) -> float | None:
    """The wait a `Retry-After` header asks for (never negative); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
