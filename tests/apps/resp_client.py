#!/usr/bin/env python3
"""A tiny RESP client the tests install on an app host (which has no redis-cli: no Redis
there). Usage: REDIS_PASSWORD=... resp_client.py PORT '[["SET","k","v"],["GET","k"]]'
Logs in as the default user when REDIS_PASSWORD is set, sends each command in order on
one connection and prints the replies as JSON (errors as {"error": text}); with
--limiter KEY LIMIT WINDOW it runs the sliding-window limiter once instead and prints
{"allowed": bool, "count": n}; with --bench N it times N GETs one after the other
(tools/bench-apps). PORT may be a unix socket's path.
"""
import json
import os
import socket
import sys
import time
import uuid


def encode(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=5):
        if str(port).startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(port)
        else:
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = self.sock.makefile("rb")

    def reply(self):
        line = self.buf.readline()
        if not line:
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            return {"error": rest}
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if rest == "-1":
                return None
            data = self.buf.read(int(rest) + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            return None if rest == "-1" else [self.reply() for _ in range(int(rest))]
        raise ConnectionError("not RESP: %r" % line[:40])

    def call(self, *args):
        self.sock.sendall(encode(args))
        return self.reply()


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
