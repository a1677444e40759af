"""Rate-limit counter stores: in-process memory, Redis, and memory synchronised with Redis."""

from kong_ace.limits.storage.base import Storage, StorageUnavailable, Window
from kong_ace.limits.storage.memory import MemoryStorage

__all__ = ["MemoryStorage", "Storage", "StorageUnavailable", "Window"]
