"""A minimal FastCGI client (stdlib only): one request to PHP-FPM, response on stdout.

usage: python3 fcgi_request.py SOCKET_OR_HOST:PORT SCRIPT_FILENAME [COOKIE] [COUNT]
Prints the last response's raw headers and body; with COUNT > 1 it sends COUNT
requests over fresh connections and prints the requests per second instead.
Copied to the host by the tests and the benchmark: PHP-FPM listens there.
"""
import socket
import struct
import sys
import time

BEGIN, PARAMS, STDIN, STDOUT, END = 1, 4, 5, 6, 3
RESPONDER = 1


def record(kind, content, request_id=1):
    return struct.pack("!BBHHBx", 1, kind, request_id, len(content), 0) + content


def encode_params(params):
    out = b""
    for key, value in params.items():
        k, v = key.encode(), value.encode()
        for part in (k, v):
            out += bytes([len(part)]) if len(part) < 128 else struct.pack("!I", len(part) | 0x80000000)
        out += k + v
    return out


def connect(target):
    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(target)
    else:
        host, port = target.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
    return sock


def request(target, script, cookie=""):
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "SCRIPT_FILENAME": script,
        "SCRIPT_NAME": "/" + script.rsplit("/", 1)[-1], "REQUEST_URI": "/", "QUERY_STRING": "",
        "SERVER_SOFTWARE": "fcgi_request", "SERVER_NAME": "localhost", "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTPS": "on",
    }
    if cookie:
        params["HTTP_COOKIE"] = cookie
    sock = connect(target)
    body = encode_params(params)
    sock.sendall(record(BEGIN, struct.pack("!HB5x", RESPONDER, 0)) + record(PARAMS, body)
                 + record(PARAMS, b"") + record(STDIN, b""))
    out, buffer = b"", b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        while len(buffer) >= 8:
            _, kind, _, length, padding = struct.unpack("!BBHHB", buffer[:7])
            if len(buffer) < 8 + length + padding:
                break
            content, buffer = buffer[8:8 + length], buffer[8 + length + padding:]
            if kind == STDOUT:
                out += content
            elif kind == END:
                sock.close()
                return out.decode()
    sock.close()
    return out.decode()


def main():
    target, script = sys.argv[1], sys.argv[2]
    cookie = sys.argv[3] if len(sys.argv) > 3 else ""
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    if count == 1:
        sys.stdout.write(request(target, script, cookie))
        return
    start = time.perf_counter()
    for _ in range(count):
        request(target, script, cookie)
    print("%.1f" % (count / (time.perf_counter() - start)))


if __name__ == "__main__":
    main()
