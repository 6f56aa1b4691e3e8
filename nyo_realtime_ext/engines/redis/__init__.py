"""The shared engine, whole: many processes or machines (nodes), one Redis, a Redis
Cluster or Sentinel.

The engine (`engine`: broker, presence, registry, profiles, and the connection
they share), the key names (`keys`), the URL's clients (`connect`), the pub/sub
connections (`shards`), and its Lua scripts, one `.lua` file each with a shared
`prelude.lua`, loaded by `scripts`.
"""

from .engine import RedisBroker, RedisEngine, RedisPresence, RedisProfiles, RedisRegistry

__all__ = ["RedisBroker", "RedisEngine", "RedisPresence", "RedisProfiles", "RedisRegistry"]
