"""The plugin server runs gevent by default: the stores must work monkey-patched."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from .conftest import RedisServer

SCRIPT = textwrap.dedent("""
    import json, sys
    import kong_ace  # the server imports the package before it patches
    leaked = sorted({"redis", "ssl"} & set(sys.modules))
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from kong_ace.limits.limiter import Limit, build_limiter
    from kong_ace.limits.storage import MemoryStorage

    redis_settings = json.loads(sys.argv[1])
    limits = (Limit(50, 60),)
    exact = build_limiter({"sync_rate": 0, "redis": redis_settings}, storage=MemoryStorage())
    jobs = [gevent.spawn(lambda: sum(exact.consume("gevent|exact", limits).allowed
                                     for _ in range(10))) for _ in range(20)]
    gevent.joinall(jobs, timeout=30)
    admitted = sum(j.value for j in jobs)

    root = MemoryStorage()
    synced = build_limiter({"sync_rate": 0.05, "redis": redis_settings}, storage=root)
    for _ in range(7):
        synced.consume("gevent|synced", limits)
    thread = synced.storage._thread
    gevent.sleep(0.5)  # the sync "thread" is a greenlet now: it must run while we yield
    import redis
    total = redis.Redis(port=redis_settings["port"]).keys("ace:rl:gevent|synced|*")
    print(json.dumps({"leaked": leaked, "admitted": admitted, "synced_keys": len(total),
                      "greenlet": type(thread).__module__}))
    root.close()
""")


def test_stores_under_gevent(redis_db: RedisServer) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(redis_db.settings)],
                         capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["leaked"] == []  # importing kong_ace must not import redis/ssl before patching
    assert got["admitted"] == 50  # 200 concurrent greenlet requests, exact
    assert got["synced_keys"] == 1  # the background sync ran as a greenlet
    assert got["greenlet"].startswith("gevent")
