"""Rate-limit counter stores: in-process memory, Redis, and memory synchronised with Redis."""

from kong_ace.storage.base import Storage, StorageUnavailable, Window
from kong_ace.storage.memory import MemoryStorage

__all__ = ["MemoryStorage", "Storage", "StorageUnavailable", "Window"]
