"""Engines keep channels, messages and members for the hub, behind `base`'s interfaces.

`memory` serves one process, durable in SQLite; `redis` serves many processes
or machines that share one Redis. Nothing above this package knows which one runs.
"""

from .base import (
    Broker,
    ChannelRegistry,
    Engine,
    EngineEvents,
    EngineUnavailable,
    History,
    PresenceManager,
    ProfileStore,
)
from .memory import MemoryEngine

__all__ = [
    "Broker",
    "ChannelRegistry",
    "Engine",
    "EngineEvents",
    "EngineUnavailable",
    "History",
    "MemoryEngine",
    "PresenceManager",
    "ProfileStore",
]
