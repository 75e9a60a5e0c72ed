"""A client of the replicated queue, run on a host of redis_ha by tests/ha: it writes a
numbered key every INTERVAL seconds through the apps' endpoint (127.0.0.1:PORT,
HAProxy), reconnecting after any error, and logs each acknowledged write with its
time, and each error, until DURATION has passed.

usage: python3 writer.py PORT DURATION INTERVAL LOG PREFIX   (password in REDIS_PASSWORD)
Standard library only: the hosts have no Redis client package.
"""
import os
import socket
import sys
import time


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def reply(reader):
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("closed")
    if line[:1] == b"-":
        raise RuntimeError(line[1:-2].decode())
    return line[:-2].decode()


def connect(port, password):
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.settimeout(2)
    reader = sock.makefile("rb")
    sock.sendall(command("AUTH", "default", password))
    reply(reader)
    sock.sendall(command("SELECT", 2))
    reply(reader)
    return sock, reader


def main():
    port, duration, interval, log, prefix = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
    password = os.environ["REDIS_PASSWORD"]
    end = time.time() + duration
    n = 0
    conn = None
    with open(log, "w", encoding="utf-8") as out:
        while time.time() < end:
            try:
                if conn is None:
                    conn = connect(port, password)
                n += 1
                conn[0].sendall(command("SET", "%s:%d" % (prefix, n), n))
                reply(conn[1])
                out.write("ack %d %.3f\n" % (n, time.time()))
            except (OSError, RuntimeError, ConnectionError) as exc:
                out.write("err %d %.3f %s\n" % (n, time.time(), str(exc).replace("\n", " ")[:80]))
                if conn is not None:
                    conn[0].close()
                conn = None
            out.flush()
            time.sleep(interval)
    if conn is not None:
        conn[0].close()


if __name__ == "__main__":
    main()
