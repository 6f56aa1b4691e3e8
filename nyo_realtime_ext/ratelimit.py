"""Token buckets: `rate` requests a second, bursts to twice that.

One limiter serves both transports and one budget serves each user: every
WebSocket connection of a user (once authenticated; before, each has a bucket
of its own) and every HTTP request of theirs spend from the same bucket. Buckets
are bounded: past `max_callers`, the least recently seen is forgotten, which can
only ever err toward admitting a request.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

# Callers whose HTTP buckets are kept at once.
MAX_TRACKED_CALLERS = 10_000


class TokenBucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class RateLimiter:
    def __init__(
        self, rate: float, max_callers: int = MAX_TRACKED_CALLERS, burst: float | None = None
    ) -> None:
        self.rate = rate
        self.burst = 2 * rate if burst is None else burst  # a second's worth, twice
        self.max_callers = max_callers
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def bucket(self, now: float) -> TokenBucket:
        """A full bucket, for a new caller."""
        return TokenBucket(self.burst, now)

    def refill(self, bucket: TokenBucket, now: float) -> float:
        """Top the bucket up for the time gone by; the tokens it holds."""
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket.tokens

    def take(self, bucket: TokenBucket, now: float) -> bool:
        """Spend one token if there is one."""
        if self.rate <= 0:
            return True
        if self.refill(bucket, now) < 1:
            return False
        bucket.tokens -= 1
        return True

    def bucket_for(self, caller: Hashable, now: float) -> TokenBucket:
        """The one bucket of `caller` (a user): every connection and HTTP request of
        theirs spends from it, so more tabs do not buy a bigger budget."""
        bucket = self._buckets.pop(caller, None) or self.bucket(now)
        self._buckets[caller] = bucket
        if len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        return bucket

    def admit(self, caller: Hashable, now: float) -> bool:
        """`take` from the bucket kept for `caller`."""
        if self.rate <= 0:
            return True
        return self.take(self.bucket_for(caller, now), now)

    def available(self, caller: Hashable, now: float) -> float:
        """How much `caller` may spend now: below 0 while it pays off a debt."""
        if self.rate <= 0:
            return math.inf
        return self.refill(self.bucket_for(caller, now), now)

    def spend(self, caller: Hashable, amount: float, now: float) -> None:
        """Take `amount` from `caller`'s bucket, into debt if it holds less: what was
        already sent is paid for by waiting longer before the next."""
        if self.rate > 0:
            bucket = self.bucket_for(caller, now)
            self.refill(bucket, now)
            bucket.tokens -= amount

    def wait(self, caller: Hashable, now: float) -> float:
        """Seconds until `caller` holds a whole token again."""
        if self.rate <= 0:
            return 0.0
        return max(0.0, 1 - self.available(caller, now)) / self.rate
