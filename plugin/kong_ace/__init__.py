"""kong-ace: Access Control Enforcement for Kong Gateway."""

from kong_ace.core.catalog import hash_key
from kong_ace.core.decision import Decision, Request
from kong_ace.core.enforcer import Enforcer
from kong_ace.core.matcher import Operation
from kong_ace.errors import ConfigError

__all__ = ["ConfigError", "Decision", "Enforcer", "Operation", "Request", "hash_key"]
__version__ = "0.1.0"
