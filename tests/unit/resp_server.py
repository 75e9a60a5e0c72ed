"""A small RESP server for the unit tests, on a real socket of the test's own (a thread per
connection): it reads each command as the protocol's bytes and sends what `answer(args)` returns.
The fake servers of the backup program's and the RESP client's tests are this one."""
import socket
import ssl
import threading


def read_command(reader):
    """One command's arguments (text), or None once the client closed."""
    line = reader.readline()
    if not line:
        return None
    args = []
    for _ in range(int(line[1:])):
        size = int(reader.readline()[1:])
        args.append(reader.read(size + 2)[:-2].decode())
    return args


class RespServer:
    """Serves `listener` (bound and listening); `commands`: every command received, in order, and
    `connections`: the commands of each connection. `tls`: an ssl.SSLContext (server side)."""

    def __init__(self, listener, tls=None):
        self.listener, self.tls = listener, tls
        self.commands, self.connections = [], []
        threading.Thread(target=self.serve, daemon=True).start()

    def answer(self, args):
        raise NotImplementedError

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.tls:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except ssl.SSLError:              # a client that refused our certificate
                    conn.close()
                    continue
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        seen = []
        self.connections.append(seen)
        with conn:
            reader = conn.makefile("rb")
            while True:
                args = read_command(reader)
                if args is None:
                    return
                seen.append(args)
                self.commands.append(args)
                conn.sendall(self.answer(args))

    def close(self):
        self.listener.close()


def unix_listener(path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(5)
    return listener


def tcp_listener():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    return listener
