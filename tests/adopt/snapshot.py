"""Every key of a Redis/Valkey instance, as JSON on stdout: run_id, and per database
each key's type and PTTL; for streams their groups with pending counts. Stdlib only:
copied to the host by molecule/adopt/prepare.yml and tests/adopt (before and after).

usage: REDIS_PW=... python3 snapshot.py (SOCKET | HOST:PORT) [USER]
The password comes from the environment, never the command line (ps)."""
import json
import os
import socket
import sys


def connect(target):
    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(target)
    else:
        host, port = target.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
    return sock, sock.makefile("rb")


def call(conn, *args):
    sock, reader = conn
    out = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    sock.sendall(out)
    return reply(reader)


def reply(reader):
    line = reader.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode("utf-8", "replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [reply(reader) for _ in range(size)]
    raise RuntimeError("unexpected reply %r" % line)


def main():
    conn = connect(sys.argv[1])
    password = os.environ.get("REDIS_PW", "")
    if password:
        call(conn, "AUTH", *(sys.argv[2:3] + [password]))
    info = call(conn, "INFO", "server")
    run_id = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("run_id:"))
    dbs = {}
    for line in call(conn, "INFO", "keyspace").splitlines():
        if line.startswith("db"):
            db = int(line[2:line.index(":")])
            call(conn, "SELECT", db)
            keys, cursor = {}, "0"
            while True:
                cursor, batch = call(conn, "SCAN", cursor, "COUNT", 1000)
                for key in batch:
                    kind = call(conn, "TYPE", key)
                    entry = {"type": kind, "pttl": call(conn, "PTTL", key)}
                    if kind == "stream":
                        entry["groups"] = {g[1]: {"pending": g[5], "consumers": g[3]}
                                           for g in call(conn, "XINFO", "GROUPS", key)}
                        entry["length"] = call(conn, "XLEN", key)
                    elif kind == "list":
                        entry["length"] = call(conn, "LLEN", key)
                    keys[key] = entry
                if cursor == "0":
                    break
            dbs[str(db)] = keys
    json.dump({"run_id": run_id, "databases": dbs}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
