"""Each plugin's last good config on disk, so a restarted server keeps serving it (SPEC §10).

Kong may hold a config that its schema accepts and ACE rejects; a running server then serves
the plugin's last good config (compiled.py). These files let a server that starts while Kong's
current config is such a one fall back the same way, instead of answering 500 to everything.

One file per ``__plugin_id`` in a directory under the Kong prefix (``kong-ace-last-good``),
owner-only (directory 0700, files 0600), written atomically (temporary file, fsync, rename).
A file holds what Kong's own config holds (key hashes, never keys) with one exception made
smaller: a field Kong resolved from a vault (named in the record's ``$refs``) is stored as its
``{vault://...}`` reference, never as the resolved secret, and resolved again when loaded
(Kong's ``env`` vault, from this process's environment). A file whose reference cannot be
resolved is not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("kong_ace.gateway.server")

DIR_NAME = "kong-ace-last-good"
REFS = "$refs"
VAULT_PREFIX = "{vault://"


class Unresolvable(ValueError):
    """A stored vault reference this process cannot resolve."""


def protect(value: Any) -> Any:
    """``value`` with every vault-resolved field put back to its reference (at any depth)."""
    if isinstance(value, Mapping):
        refs = value.get(REFS)
        out = {k: protect(v) for k, v in value.items()}
        if isinstance(refs, Mapping):
            for name, ref in refs.items():
                if isinstance(ref, str) and name in out:
                    out[name] = ref
        return out
    if isinstance(value, list):
        return [protect(v) for v in value]
    return value


def resolve(value: Any, env: Mapping[str, str]) -> Any:
    """``value`` with each field named in a ``$refs`` map resolved again (the env vault)."""
    if isinstance(value, Mapping):
        out = {k: resolve(v, env) for k, v in value.items()}
        refs = value.get(REFS)
        if isinstance(refs, Mapping):
            for name, ref in refs.items():
                if isinstance(ref, str) and name in out:
                    out[name] = env_reference(ref, env)
        return out
    if isinstance(value, list):
        return [resolve(v, env) for v in value]
    return value


def env_reference(ref: str, env: Mapping[str, str]) -> str:
    """kong/vaults/env ``get``: ``{vault://env/redis-pass}`` is $REDIS_PASS."""
    if not (ref.startswith(VAULT_PREFIX) and ref.endswith("}")):
        raise Unresolvable(f"not a vault reference: {ref[:40]!r}")
    vault, _, resource = ref[len(VAULT_PREFIX):-1].partition("/")
    name = resource.split("/", 1)[0].split("#", 1)[0].replace("-", "_").upper()
    if vault != "env" or not name or name not in env:
        raise Unresolvable(f"cannot resolve {ref} here (only Kong's env vault, from this "
                           "process's environment)")
    return env[name]


class LastGoodFiles:
    """The directory of last good configs: ``save`` after a good compile, ``load`` at need."""

    def __init__(self, directory: str, env: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self._env = os.environ if env is None else env
        self._saved: dict[str, str] = {}  # plugin id -> config hash written by this process
        self.configs: dict[str, dict[str, Any]] = {}  # plugin id -> resolved config, at start
        self.broken = False  # the directory could not be used: logged once

    def path(self, plugin_id: str) -> str:
        """The file of ``plugin_id`` (hashed: a plugin id never becomes a path)."""
        digest = hashlib.sha256(plugin_id.encode("utf-8", "surrogateescape")).hexdigest()
        return os.path.join(self.directory, f"{digest[:32]}.json")

    def load_all(self) -> int:
        """Read every stored config (at start); how many are usable."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("last good configs: cannot read %s: %s", self.directory, exc)
            return 0
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            place = os.path.join(self.directory, name)
            try:
                with open(place, encoding="utf-8") as f:
                    doc = json.load(f)
                pid, config = doc["plugin_id"], resolve(doc["config"], self._env)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("last good config %s not used: %s", place, exc)
                continue
            self.configs[pid] = config
            self._saved[pid] = doc.get("config_hash", "")
        if self.configs:
            log.info("last good configs on disk for %d plugin(s) in %s", len(self.configs),
                     self.directory)
        return len(self.configs)

    def save(self, plugin_id: str, key: str, config: Mapping[str, Any]) -> None:
        """Keep ``config`` (hash ``key``) as the last good one of ``plugin_id``; never raises."""
        if self.broken or self._saved.get(plugin_id) == key:
            return
        doc = {"plugin_id": plugin_id, "config_hash": key, "saved_at": time.time(),
               "config": protect({k: v for k, v in config.items() if not k.startswith("__")})}
        try:
            self._ensure_directory()
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600
                    json.dump(doc, f, separators=(",", ":"), default=str)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path(plugin_id))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)
        except OSError as exc:
            self.broken = True
            log.error("last good configs: cannot write in %s (%s); a restart while Kong holds "
                      "a config ACE rejects will answer 500", self.directory, exc)
            return
        self._saved[plugin_id] = key
        self.configs.pop(plugin_id, None)  # memory holds the newer one now

    def _ensure_directory(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        st = os.lstat(self.directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(f"{self.directory} is not a directory of this user")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.directory, 0o700)
