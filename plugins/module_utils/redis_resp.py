"""The collection's one Redis client (RESP2), standard library only: the hosts need no client
package. Used by the modules (imported as the collection's module_utils), by the backup program
(the redis_backup role installs this file next to it, /usr/local/lib/redis-vps/redis_resp.py) and
by the tests' programs on the hosts (copied beside them).

  conn = connect("/run/redis-queue/redis-server.sock", 10, user="admin", password=secret)
  conn = connect(("127.0.0.1", 6380), 10, password=secret, tls=ssl_context)
  conn.call("SET", "k", "v")                  # one reply; an error reply raises RedisError
  conn.pipeline([("GET", "a"), ("GET", "b")])  # every reply, an error reply returned as RedisError
  conn.info("persistence")                    # parse_info() of INFO's text: the one INFO parser
"""

import socket
import time


class RedisError(Exception):
    """An error reply from the server."""


def parse_info(text):
    """INFO's text as a dict of `name: value` (strings; section headers and blank lines dropped)."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {name: value.strip() for name, value in pairs}


def databases(info):
    """INFO keyspace, as parse_info() read it -> {db number: keys}."""
    out = {}
    for name, value in info.items():
        if name.startswith("db") and name[2:].isdigit():
            out[int(name[2:])] = int(dict(part.split("=", 1) for part in value.split(",") if "=" in part).get("keys", 0))
    return out


def encode(args):
    """One command in RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespConnection:
    """A connection: commands sent, replies parsed."""

    raw = False

    def __init__(self, path, timeout, raw=False, tls=None, server_hostname=None):
        """`path`: a unix socket, or a (host, port) pair for TCP. `raw`: bulk replies as bytes (DUMP
        payloads, binary keys) instead of text. `tls`: an ssl.SSLContext to speak TLS with (TCP)."""
        family = socket.AF_INET if isinstance(path, tuple) else socket.AF_UNIX
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname or path[0])
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.reader = self.sock.makefile("rb")
        self.raw = raw

    def close(self):
        self.reader.close()
        self.sock.close()

    def auth(self, user, password):
        """AUTH as `user` (None: the `default` user, the one-argument form)."""
        return self.call("AUTH", user, password) if user else self.call("AUTH", password)

    def call(self, *args):
        self.sock.sendall(encode(args))
        return self._reply()

    def pipeline(self, commands):
        """Send every command, then read every reply (an error reply is returned, not raised)."""
        self.sock.sendall(b"".join(encode(args) for args in commands))
        replies = []
        for _command in commands:
            try:
                replies.append(self._reply())
            except RedisError as error:
                replies.append(error)
        return replies

    def info(self, *sections):
        return parse_info(self.call("INFO", *sections))

    def _reply(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)[:-2]
            return data if self.raw else data.decode(errors="replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _index in range(size)]
        raise RedisError("unexpected reply %r" % line)


def connect(path, timeout, raw=False, user=None, password=None, tls=None, server_hostname=None, retry=True):
    """Connect (retrying while the socket is not there yet, an instance starting, unless not
    `retry`), then AUTH when a password is given; a refused AUTH closes the connection and raises.
    `tls`, `server_hostname`: as for RespConnection (the name checked defaults to the host's)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = RespConnection(path, timeout, raw=raw, tls=tls, server_hostname=server_hostname)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if not retry or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    if password is not None:
        try:
            conn.auth(user, password)
        except BaseException:
            conn.close()
            raise
    return conn
