"""A PostgreSQL database of its own for Kong's database mode (no pytest imports).

The machine's PostgreSQL (127.0.0.1:5432, trust auth, user postgres; ``KONG_ACE_PG_HOST``,
``KONG_ACE_PG_PORT``, ``KONG_ACE_PG_USER`` override) gets a uniquely named database per test
session, bootstrapped with `kong migrations bootstrap` and dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from typing import Any

from tests.realkong.kong import KongInstall

HOST = os.environ.get("KONG_ACE_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("KONG_ACE_PG_PORT", "5432"))
USER = os.environ.get("KONG_ACE_PG_USER", "postgres")


def _psql(sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-h", HOST, "-p", str(PORT), "-U", USER, "-d", database, "-v",
         "ON_ERROR_STOP=1", "-qAtc", sql],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PGCONNECT_TIMEOUT": "3"})


def unreachable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    if shutil.which("psql") is None:
        return "no psql on PATH (Debian: postgresql-client)"
    done = _psql("select 1")
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["?"])[0]
        return f"PostgreSQL at {USER}@{HOST}:{PORT} is not reachable: {first}"
    return None


class Database:
    """A fresh, uniquely named database, bootstrapped for Kong; ``drop()`` removes it."""

    def __init__(self, install: KongInstall) -> None:
        self.install = install
        self.name = f"kong_ace_{os.getpid()}_{secrets.token_hex(4)}"

    def settings(self) -> dict[str, Any]:
        """The kong.conf settings that point a node at this database."""
        return {"database": "postgres", "pg_host": HOST, "pg_port": PORT, "pg_user": USER,
                "pg_database": self.name}

    def create(self) -> Database:
        """CREATE DATABASE, then `kong migrations bootstrap` (about 1-2 s)."""
        done = _psql(f'CREATE DATABASE "{self.name}"')
        if done.returncode != 0:
            raise RuntimeError(f"cannot create database {self.name}: {done.stderr.strip()}")
        env = {f"KONG_{k.upper()}": str(v) for k, v in self.settings().items()}
        env["KONG_ROUTER_FLAVOR"] = "traditional"  # the only router the shared build has
        boot = self.install.run("migrations", "bootstrap", env=env, timeout=180)
        if boot.returncode != 0:
            self.drop()
            raise RuntimeError(f"kong migrations bootstrap failed: {boot.stderr.strip()}")
        return self

    def drop(self) -> None:
        """DROP DATABASE, closing what nodes left connected."""
        _psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
