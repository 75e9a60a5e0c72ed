"""A client that writes without pause (run on the VPS by tests/backup): SET bw:<n> <n> over the
queue's unix socket as the application user, timing each command, for a given number of seconds;
at a steady RATE a second (each command starts on its schedule, at once when behind), then
reads every acknowledged key back. Prints one JSON line: acked, lost, the longest command and
the 99th percentile (ms), and (time, ms) of each command for the test to cut a window from.
Usage: python3 writer.py SOCKET SECONDS RATE < password"""
import json
import socket
import sys
import time


def main():
    path, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    password = sys.stdin.readline().strip()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    reader = sock.makefile("rb")

    def call(*args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        sock.sendall(b"".join(out))
        line = reader.readline()
        if line[:1] == b"$":
            size = int(line[1:])
            return None if size < 0 else reader.read(size + 2)[:-2].decode()
        return line.decode().strip()

    assert call("AUTH", "default", password) == "+OK"
    timings, n = [], 0
    begin = time.monotonic()
    end = begin + seconds
    while time.monotonic() < end:
        wait = begin + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        start = time.time()
        reply = call("SET", "bw:%d" % n, n)
        timings.append((start, (time.time() - start) * 1000))
        if reply != "+OK":
            break
        n += 1
    lost = sum(1 for i in range(n) if call("GET", "bw:%d" % i) != str(i))
    ms = sorted(t for _, t in timings)
    print(json.dumps({"acked": n, "lost": lost, "max_ms": ms[-1], "p99_ms": ms[int(len(ms) * 0.99)],
                      "timings": timings}))


main()
