"""The embedded engine, whole: the engine (`engine`), its SQLite store (`store`)
with the schema and migrations (`schema`), and the presence tracker (`tracker`)."""

from .engine import MemoryEngine
from .store import Store, StoreInUse

__all__ = ["MemoryEngine", "Store", "StoreInUse"]
