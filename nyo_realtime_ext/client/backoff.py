"""When to try again after a lost connection: docs/protocol.md, "Client behaviour"."""

from __future__ import annotations

import random as _random
from collections.abc import Callable

# The reconnection policy of docs/protocol.md ("Client behaviour"), the same in
# the TypeScript client (labextension/src/client/); tests/scenarios/client.json
# is replayed against both.
#: Seconds: the window of the first reconnect attempt; it doubles per failed attempt.
RECONNECT_DELAY = 3.0
#: Seconds: no window is wider.
MAX_RECONNECT_DELAY = 30.0
#: Failed attempts in a row before the client gives up (state `closed`); None: never.
MAX_RECONNECT_ATTEMPTS: int | None = 10
#: After a 4429 the next attempt waits in the window of this attempt (8 x the first).
RATE_LIMITED_ATTEMPT = 4
#: Seconds: the window of the first retry of a resubscription the server answered
#: `unavailable` (its engine busy or away) on a live connection; it doubles per
#: failed retry up to MAX_RESUBSCRIBE_DELAY. Full jitter, as for reconnects.
RESUBSCRIBE_DELAY = 1.0
MAX_RESUBSCRIBE_DELAY = 30.0


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = _random.random
) -> float:
    """Seconds to wait before reconnect `attempt` (1, 2, ...): "full jitter".

    The window doubles with every attempt up to `cap`, and the delay is drawn
    uniformly inside it, so that clients cut off together do not come back
    together (AWS Architecture Blog, "Exponential Backoff And Jitter").
    """
    return rand() * backoff_window(attempt, base, cap)


def backoff_window(attempt: int, base: float, cap: float) -> float:
    """The longest delay before reconnect `attempt`: `base` doubled per attempt, at most `cap`."""
    # The exponent is bounded: a client that never gives up counts on for ever.
    return min(cap, base * 2 ** min(max(0, attempt - 1), 62))
