"""rate_limiting.redis ssl, ssl_verify and server_name against a real TLS redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kong_ace.limits.limiter import Limit, StorageUnavailable, build_limiter

from .conftest import Clock


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A TLS-only redis-server whose certificate names redis.test, signed by a test CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing")
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=kong-ace test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=redis.test", cwd=d)
    (d / "ext").write_text("subjectAltName=DNS:redis.test\n")
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "ext", cwd=d)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "srv.crt", "--tls-key-file", "srv.key",
         "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(d)],
        cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_cert_reqs="none")
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("TLS redis-server did not start")
            time.sleep(0.05)
    yield port, d / "ca.crt"
    proc.terminate()
    proc.wait(timeout=10)


def consume(port: int, **redis_settings: Any) -> bool:
    # Pools are shared per distinct settings; tests vary `timeout` to get a fresh pool whose
    # connections have not yet been through (or skipped) verification.
    settings = {"host": "127.0.0.1", "port": port, "timeout": 1000, "ssl": True,
                **redis_settings}
    limiter = build_limiter({"sync_rate": 0, "redis": settings}, clock=Clock(), storage=None)
    return limiter.consume("tls|pkg:a", (Limit(1000, 60),)).allowed


def test_ssl_without_verification(tls_redis: tuple[int, Path]) -> None:
    assert consume(tls_redis[0], ssl_verify=False)


def test_ssl_verify_rejects_an_untrusted_certificate(tls_redis: tuple[int, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent")  # the test CA is not trusted
    with pytest.raises(StorageUnavailable):
        consume(tls_redis[0], ssl_verify=True, server_name="redis.test", timeout=999)


def test_server_name_is_the_name_verified(tls_redis: tuple[int, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    port, ca = tls_redis
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # trusted, as lua_ssl_trusted_certificate
    assert consume(port, ssl_verify=True, server_name="redis.test")
    with pytest.raises(StorageUnavailable):  # the certificate does not name 127.0.0.1
        consume(port, ssl_verify=True, timeout=998)
