"""kong-ace: Access Control Enforcement for Kong Gateway."""

from .catalog import hash_key
from .decision import Decision, Request
from .enforcer import Enforcer
from .errors import ConfigError
from .matcher import Operation

__all__ = ["ConfigError", "Decision", "Enforcer", "Operation", "Request", "hash_key"]
__version__ = "0.1.0"
