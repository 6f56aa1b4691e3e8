"""Engines keep channels, messages and members for the hub, behind `base`'s interfaces.

`memory` serves one process, durable in SQLite; `redis` serves many processes
or machines that share one Redis. Nothing above this package knows which one runs:
`make_engine` picks one by the scheme of `Realtime.redis_url` (none: memory).
"""

from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from .base import (
    Broker,
    ChannelRegistry,
    Engine,
    EngineEvents,
    EngineUnavailable,
    History,
    OutcomeUnknown,
    PresenceManager,
    ProfileStore,
    StateConflict,
    StateLimitExceeded,
    StateLimits,
    StateSnapshot,
    StateStore,
)
from .memory import MemoryEngine

# URL scheme -> "module:class" of the engine that serves it, imported when used
# (redis-py is needed only by the Redis engine). A new engine is a package of its
# own and a line here.
ENGINES = {
    "redis": "nyo_realtime_ext.engines.redis:RedisEngine",
    "rediss": "nyo_realtime_ext.engines.redis:RedisEngine",
    "unix": "nyo_realtime_ext.engines.redis:RedisEngine",
    # A Redis Cluster, or the master Sentinel names (engines/redis/connect.py).
    "redis+cluster": "nyo_realtime_ext.engines.redis:RedisEngine",
    "redis+sentinel": "nyo_realtime_ext.engines.redis:RedisEngine",
}


def make_engine(config: Any) -> Engine:
    """The engine `config` asks for: by its URL's scheme, else the memory engine."""
    if not config.redis_url:
        return MemoryEngine.from_config(config)
    scheme = urlsplit(config.redis_url).scheme
    if scheme not in ENGINES:
        known = ", ".join(f"{name}://" for name in ENGINES)
        raise ValueError(f"no engine serves {scheme}:// URLs (known: {known})")
    module, _, name = ENGINES[scheme].partition(":")
    engine: Engine = getattr(import_module(module), name).from_config(config)
    return engine


__all__ = [
    "Broker",
    "ChannelRegistry",
    "Engine",
    "EngineEvents",
    "EngineUnavailable",
    "History",
    "MemoryEngine",
    "OutcomeUnknown",
    "PresenceManager",
    "ProfileStore",
    "StateConflict",
    "StateLimitExceeded",
    "StateLimits",
    "StateSnapshot",
    "StateStore",
    "make_engine",
]
