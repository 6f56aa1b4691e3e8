"""Engines carry messages and presence between the hub and the store.

The memory engine serves one process; a Redis engine can sit beside it for many
processes or machines. Nothing above this package knows which one runs.
"""

from .base import Deliver, Engine, History
from .memory import MemoryEngine

__all__ = ["Deliver", "Engine", "History", "MemoryEngine"]
