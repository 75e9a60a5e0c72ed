"""A writer that fills the queue, run on the VM by tests/vm/test_flood.py beside the collection's RESP
client (plugins/module_utils/redis_resp.py, copied next to this file): it logs every write the queue
acknowledged, and checks them all afterwards.

usage: python3 queue_fill.py write PORT COUNT SIZE LOG   SETs COUNT values of SIZE bytes (db 2, keys
                                                          flood:q:N) in pipelines of 20; LOG gets
                                                          "ack N" per write acknowledged, "err N text"
                                                          per refusal, "end" at the end
       python3 queue_fill.py check PORT SIZE LOG          prints JSON: acknowledged, missing, e.g.;
                                                          then deletes the writer's keys
The password (of the queue's `default` user) comes on stdin, never on the command line.
"""
import json
import sys
import time

import redis_resp

BATCH = 20


def key(n):
    return "flood:q:%d" % n


def value(n, size):
    head = "%d:" % n
    return head + "v" * (size - len(head))


def login(port, password):
    conn = redis_resp.connect(("127.0.0.1", port), 30, user="default", password=password)
    conn.call("SELECT", 2)
    return conn


def write(conn, count, size, log):
    with open(log, "w", encoding="utf-8") as out:
        out.write("start %.3f\n" % time.time())
        for first in range(0, count, BATCH):
            numbers = range(first, min(first + BATCH, count))
            replies = conn.pipeline([("SET", key(n), value(n, size)) for n in numbers])
            for n, reply in zip(numbers, replies):
                if reply == "OK":
                    out.write("ack %d\n" % n)
                else:
                    out.write("err %d %s\n" % (n, str(reply).replace("\n", " ")[:80]))
            out.flush()
        out.write("end %.3f\n" % time.time())


def check(conn, size, log):
    acked = [int(line.split()[1]) for line in open(log, encoding="utf-8") if line.startswith("ack ")]
    missing = []
    for first in range(0, len(acked), 200):
        numbers = acked[first:first + 200]
        replies = conn.pipeline([("GETRANGE", key(n), 0, 31) for n in numbers]
                                + [("STRLEN", key(n)) for n in numbers])
        heads, lengths = replies[:len(numbers)], replies[len(numbers):]
        missing += [n for n, head, length in zip(numbers, heads, lengths)
                    if head != value(n, size)[:32] or length != size]
    print(json.dumps({"acknowledged": len(acked), "missing": len(missing), "e.g.": missing[:5]}))
    # Then the writer's keys go (acknowledged or not): the next tests fill the queue themselves.
    count = max([int(line.split()[1]) + 1 for line in open(log, encoding="utf-8") if line[:4] in ("ack ", "err ")] or [0])
    for first in range(0, count, 500):
        conn.call("UNLINK", *[key(n) for n in range(first, min(first + 500, count))])


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    conn = login(port, sys.stdin.readline().rstrip("\n"))
    if mode == "write":
        write(conn, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        check(conn, int(sys.argv[3]), sys.argv[4])
    conn.close()


if __name__ == "__main__":
    main()
