"""The collection's one RESP client (plugins/module_utils/redis_resp.py): connect over a unix socket,
TCP and TLS, AUTH, pipelined replies, errors, the INFO parser. Against a small server on a real
socket of the test's own (resp_server.py), speaking the protocol's bytes."""
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
from ansible_collections.redis_vps.server.plugins.module_utils import redis_resp
from resp_server import RespServer, tcp_listener, unix_listener

INFO = ("# Server\r\nredis_version:8.0.2\r\nrun_id:abc\r\n\r\n# Clients\r\nx:1:2\r\n"
        "# Keyspace\r\ndb0:keys=35,expires=0,avg_ttl=0\r\ndb3:keys=2,expires=1,avg_ttl=9\r\n")


def answer(args, password):
    if args[0] == "AUTH":
        return b"+OK\r\n" if args[-1] == password else b"-WRONGPASS invalid username-password pair\r\n"
    if args[0] == "INFO":
        return b"$%d\r\n%s\r\n" % (len(INFO), INFO.encode())
    if args[0] == "GET":
        return b"$-1\r\n" if args[1] == "missing" else b"$3\r\n\xff\x00v\r\n"
    return b"-ERR unknown command '%s'\r\n" % args[0].encode()


class Server(RespServer):
    """Answers AUTH, INFO and GET (other commands: an error); `received`: the commands of each connection."""

    def __init__(self, listener, password="secret", tls=None):
        self.password = password
        super().__init__(listener, tls)
        self.received = self.connections

    def answer(self, args):
        return answer(args, self.password)


def test_parse_info():
    info = redis_resp.parse_info("# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n\r\n# Clients\r\nx:1:2\r\n")
    assert info == {"redis_version": "7.0.15", "run_id": "abc", "x": "1:2"}


def test_unix_socket_auth_as_a_user_and_the_one_info_parser(tmp_path):
    server = Server(unix_listener(tmp_path / "r.sock"))
    conn = redis_resp.connect(str(tmp_path / "r.sock"), 5, user="admin", password="secret")
    info = conn.info("server", "keyspace")
    assert info["redis_version"] == "8.0.2" and info["run_id"] == "abc" and info["x"] == "1:2"
    assert "# Server" not in info and redis_resp.databases(info) == {0: 35, 3: 2}
    assert conn.call("GET", "missing") is None
    assert conn.call("GET", "k") == "\ufffd\x00v"        # text, an invalid byte replaced
    conn.close()
    assert server.received[0][:2] == [["AUTH", "admin", "secret"], ["INFO", "server", "keyspace"]]


def test_raw_replies_and_pipelined_errors_returned_not_raised(tmp_path):
    Server(unix_listener(tmp_path / "r.sock"))
    conn = redis_resp.connect(str(tmp_path / "r.sock"), 5, raw=True, password="secret")
    replies = conn.pipeline([("GET", "k"), ("NOPE",), ("GET", "missing")])
    assert replies[0] == b"\xff\x00v" and replies[2] is None
    assert isinstance(replies[1], redis_resp.RedisError) and "unknown command" in str(replies[1])
    with pytest.raises(redis_resp.RedisError, match="unknown command"):
        conn.call("NOPE")
    conn.close()


def test_a_refused_auth_raises_and_closes_and_a_default_user_auth_has_one_argument(tmp_path):
    server = Server(unix_listener(tmp_path / "r.sock"))
    with pytest.raises(redis_resp.RedisError, match="WRONGPASS"):
        redis_resp.connect(str(tmp_path / "r.sock"), 5, password="wrong")
    for _ in range(50):                      # the server sees the connection closed
        if server.received and server.received[0] == [["AUTH", "wrong"]]:
            break
        time.sleep(0.05)
    assert server.received[0] == [["AUTH", "wrong"]]


def test_connect_waits_for_a_socket_still_to_come_unless_told_not_to(tmp_path):
    path = tmp_path / "late.sock"
    with pytest.raises(FileNotFoundError):
        redis_resp.connect(str(path), 5, retry=False)
    threading.Timer(0.5, lambda: Server(unix_listener(path))).start()
    started = time.monotonic()
    redis_resp.connect(str(path), 5, password="secret").close()
    assert 0.4 < time.monotonic() - started < 4


def test_tcp_and_a_closed_connection(tmp_path):
    listener = tcp_listener()
    Server(listener)
    conn = redis_resp.connect(listener.getsockname(), 5, user="default", password="secret")
    assert conn.info()["run_id"] == "abc"
    conn.sock.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionError):
        conn.call("GET", "k")


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make a certificate")
def test_tls_with_a_verified_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=redis-test", "-addext", "subjectAltName=DNS:redis-test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(str(cert), str(key))
    listener = tcp_listener()
    Server(listener, tls=server_side)
    client = ssl.create_default_context(cafile=str(cert))
    conn = redis_resp.RespConnection(listener.getsockname(), 5, tls=client, server_hostname="redis-test")
    conn.auth("admin", "secret")
    assert conn.info()["redis_version"] == "8.0.2" and conn.sock.version().startswith("TLS")
    conn.close()
    with pytest.raises(ssl.SSLCertVerificationError):           # another name: refused
        redis_resp.connect(listener.getsockname(), 5, tls=client)
