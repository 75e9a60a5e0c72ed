"""Sends `total` bytes of one unfinished request to a Redis on 127.0.0.1:PORT after AUTH (password on
stdin; the login by redis_resp.py, the collection's client, put beside it); prints, as JSON, how much
was sent before the server cut the connection, and whether it did.
usage: python3 flood.py PORT bulk|many TOTAL   (bulk: one SET of a value announced huge; many: an
endless RPUSH of small arguments, which no query-buffer limit alone stops)
"""
import json
import sys
import time

import redis_resp     # the collection's RESP client (put beside this program): the login

port, shape, total = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = redis_resp.connect(("127.0.0.1", port), 30, user="default", password=sys.stdin.readline().rstrip("\n"), retry=False)
s = conn.sock         # then raw bytes: a request no client library would send
if shape == "bulk":       # one SET whose value is announced huge and never finishes
    s.sendall(b"*3\r\n$3\r\nSET\r\n$10\r\nflood:bulk\r\n$%d\r\n" % (total + 1000))
    chunk = b"x" * (1 << 20)
else:                     # a command of many small arguments, never finished
    args = total // 600 + 1000
    s.sendall(b"*%d\r\n$5\r\nRPUSH\r\n$10\r\nflood:many\r\n" % args)
    arg = b"$590\r\n" + b"y" * 590 + b"\r\n"
    chunk = arg * 1700
sent, cut, started = 0, False, time.monotonic()
try:
    while sent < total:
        s.sendall(chunk)
        sent += len(chunk)
except OSError:
    cut = True
if not cut:
    s.settimeout(5)
    try:
        cut = s.recv(100) == b""
    except OSError:
        cut = True
print(json.dumps({"shape": shape, "sent_mb": round(sent / 1048576, 1), "cut": cut, "seconds": round(time.monotonic() - started, 1)}))
