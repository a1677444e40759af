"""A Kong-protocol harness: drive the real plugin server the way Kong's Lua side does."""

from kong_ace.testing.kong import KongNode, KongWorker, Result
from kong_ace.testing.pdk import KongRequest
from kong_ace.testing.process import PluginServerProcess, dump_info, server_command
from kong_ace.testing.rpc import KongRPC, RPCFailure
from kong_ace.testing.schema import plugin_config_schema, validate

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
