"""A client of the replicated queue, run on a host of redis_ha by tests/ha: it writes a
numbered key every INTERVAL seconds through the apps' endpoint (127.0.0.1:PORT,
HAProxy), reconnecting after any error, and logs each acknowledged write with its
time, and each error, until DURATION has passed.

usage: python3 writer.py PORT DURATION INTERVAL LOG PREFIX   (password in REDIS_PASSWORD)
Standard library and the collection's RESP client (redis_resp.py, put beside it) only: the hosts
have no Redis client package.
"""
import os
import sys
import time

import redis_resp     # the collection's RESP client, copied beside this program


def connect(port, password):
    conn = redis_resp.connect(("127.0.0.1", port), 2, user="default", password=password, retry=False)
    conn.call("SELECT", 2)
    return conn


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
                conn.call("SET", "%s:%d" % (prefix, n), n)
                out.write("ack %d %.3f\n" % (n, time.time()))
            except (OSError, redis_resp.RedisError) as exc:     # ConnectionError is an OSError
                out.write("err %d %.3f %s\n" % (n, time.time(), str(exc).replace("\n", " ")[:80]))
                if conn is not None:
                    conn.close()
                conn = None
            out.flush()
            time.sleep(interval)
    if conn is not None:
        conn.close()


if __name__ == "__main__":
    main()
