"""Just enough of the Redis protocol (RESP2) for the role's modules: commands over a
unix socket, replies parsed. The standard library only: the hosts need no client
package. Shared by library/redis_instance.py and library/redis_sentinel.py, which
import it as the collection's module_utils (plugins/module_utils/redis_resp.py links
here): found that way both from this repository and from the installed collection."""

import socket
import time


class RedisError(Exception):
    """An error reply from the server."""


class RespConnection:
    """Just enough RESP2 to send commands and read replies."""

    raw = False

    def __init__(self, path, timeout, raw=False):
        """`path`: a unix socket, or a (host, port) pair for TCP. `raw`: bulk replies
        as bytes (DUMP payloads, binary keys) instead of text."""
        family = socket.AF_INET if isinstance(path, tuple) else socket.AF_UNIX
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        self.raw = raw

    def close(self):
        self.reader.close()
        self.sock.close()

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def pipeline(self, commands):
        """Send every command, then read every reply (an error reply is returned, not raised)."""
        parts = []
        for args in commands:
            parts.append(b"*%d\r\n" % len(args))
            for arg in args:
                data = arg if isinstance(arg, bytes) else str(arg).encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        replies = []
        for _command in commands:
            try:
                replies.append(self._reply())
            except RedisError as error:
                replies.append(error)
        return replies

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
            return data if self.raw else data.decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _index in range(size)]
        raise RedisError("unexpected reply %r" % line)


def connect(path, timeout):
    """Connect, retrying while the socket is not there yet (instance starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return RespConnection(path, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
