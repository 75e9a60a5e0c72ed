"""A client that writes without pause (run on the VPS by tests/backup): SET bw:<n> <n> over the
queue's unix socket as the application user, timing each command, for a given number of seconds;
at a steady RATE a second (each command starts on its schedule, at once when behind), then
reads every acknowledged key back. Prints one JSON line: acked, lost, the longest command and
the 99th percentile (ms), and (time, ms) of each command for the test to cut a window from.
Usage: python3 writer.py SOCKET SECONDS RATE < password   (redis_resp.py, the collection's client, beside it)"""
import json
import sys
import time

import redis_resp     # the collection's RESP client, copied beside this program


def main():
    path, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    conn = redis_resp.connect(path, 60, user="default", password=sys.stdin.readline().strip(), retry=False)
    timings, n = [], 0
    begin = time.monotonic()
    end = begin + seconds
    while time.monotonic() < end:
        wait = begin + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        start = time.time()
        try:
            conn.call("SET", "bw:%d" % n, n)
        except redis_resp.RedisError:
            break
        finally:
            timings.append((start, (time.time() - start) * 1000))
        n += 1
    lost = sum(1 for i in range(n) if conn.call("GET", "bw:%d" % i) != str(i))
    ms = sorted(t for _, t in timings)
    print(json.dumps({"acked": n, "lost": lost, "max_ms": ms[-1], "p99_ms": ms[int(len(ms) * 0.99)],
                      "timings": timings}))


main()
