#!/usr/bin/env python3
"""The tests' command-line RESP client on an app host (which has no redis-cli: no Redis
there), on the collection's one client (plugins/module_utils/redis_resp.py beside it). Usage: REDIS_PASSWORD=... resp_client.py PORT '[["SET","k","v"],["GET","k"]]'
Logs in as the default user when REDIS_PASSWORD is set, sends each command in order on
one connection and prints the replies as JSON (errors as {"error": text}); with
--limiter KEY LIMIT WINDOW it runs the sliding-window limiter once instead and prints
{"allowed": bool, "count": n}; with --bench N it times N GETs one after the other
(tools/bench-apps). PORT may be a unix socket's path.
"""
import json
import os
import sys
import time
import uuid

from redis_resp import RedisError, RespConnection   # the collection's client, copied beside this file


class Conn:
    """An error reply comes back as {"error": text}, the way this program prints it."""

    def __init__(self, port, host="127.0.0.1", timeout=5):
        self.conn = RespConnection(port if str(port).startswith("/") else (host, int(port)), timeout)

    def call(self, *args):
        try:
            return self.conn.call(*args)
        except RedisError as error:
            return {"error": str(error)}


def limiter(conn, key, limit, window):
    """The seed article's sliding window, without its bugs: a unique member per request
    (two in the same instant count twice), and a refused request is not recorded."""
    now = time.time()
    member = "%f-%s" % (now, uuid.uuid4().hex)
    conn.call("MULTI")
    conn.call("ZREMRANGEBYSCORE", key, 0, now - window)
    conn.call("ZADD", key, now, member)
    conn.call("ZCARD", key)
    conn.call("EXPIRE", key, int(window) + 1)
    replies = conn.call("EXEC")
    count = replies[2]
    if count > limit:
        conn.call("ZREM", key, member)
    return {"allowed": count <= limit, "count": count}


def bench(conn, count):
    """Round trips of a GET, in microseconds: median, 99th percentile, mean."""
    conn.call("SET", "bench:apps", "x" * 100)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.call("GET", "bench:apps")
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return {"count": count, "median_us": round(times[len(times) // 2], 1),
            "p99_us": round(times[int(len(times) * 0.99) - 1], 1), "mean_us": round(sum(times) / len(times), 1)}


def main():
    port = sys.argv[1]
    conn = Conn(port)
    password = os.environ.get("REDIS_PASSWORD")
    out = []
    if password:
        out.append(conn.call("AUTH", password))
    if sys.argv[2] == "--bench":
        out.append(bench(conn, int(sys.argv[3])))
    elif sys.argv[2] == "--limiter":
        conn.call("SELECT", 3)
        out.append(limiter(conn, sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
    else:
        for cmd in json.loads(sys.argv[2]):
            out.append(conn.call(*cmd))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
