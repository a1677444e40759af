"""A Kong-protocol harness: drive the real plugin server the way Kong's Lua side does."""

from .kong import KongNode, KongWorker, Result
from .pdk import KongRequest
from .process import PluginServerProcess, dump_info, server_command
from .rpc import KongRPC, RPCFailure
from .schema import plugin_config_schema, validate

__all__ = [
    "KongNode",
    "KongRPC",
    "KongRequest",
    "KongWorker",
    "PluginServerProcess",
    "RPCFailure",
    "Result",
    "dump_info",
    "plugin_config_schema",
    "server_command",
    "validate",
]
