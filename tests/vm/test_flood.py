"""A hostile client on the 1 GB VM (issue 20, item 7): one client sends 600 MB of one request it never
finishes to the cache while a writer fills the queue with acknowledged writes. The cache cuts that
client off (client-query-buffer-limit or maxmemory-clients: the test says which), nothing is
OOM-killed, both instances keep their process, and the queue keeps every write it acknowledged.

REDIS_VPS_FLOOD_UNBOUNDED=1 runs it with the bounds lifted live (Redis's defaults: a 1gb query buffer,
maxmemory-clients 0) and put back from the file afterwards: that run must fail (docs/vm.md)."""
import json
import os
import pathlib
import re

import pytest
from helpers import REPO, put_file, put_program
from test_vm import FIGURES, before_reboot

HERE = pathlib.Path(__file__).parent
TOOLS = "/usr/local/lib/redis-vps-tests"
FLOOD_MB = 600
VALUE = 4096
UNBOUNDED = os.environ.get("REDIS_VPS_FLOOD_UNBOUNDED") == "1"
OOM = re.compile(r"Out of memory|oom-kill|Killed process")
# INFO stats counters of the two bounds (the query buffer's since Redis 7.4 / Valkey 8.0).
CUT_COUNTERS = {"client-query-buffer-limit": "client_query_buffer_limit_disconnections",
                "maxmemory-clients": "evicted_clients"}


def unit_state(host, service):
    """What a restart or an OOM kill would change: the main process, systemd's restarts, the run."""
    out = host.check_output("systemctl show -p MainPID -p NRestarts -p InvocationID %s" % service)
    return dict(line.split("=", 1) for line in out.splitlines())


def install_tools(host):
    """The writer and the flood's client, each with the collection's RESP client beside it."""
    for path in (HERE / "queue_fill.py", REPO / "tests" / "rerun" / "flood.py"):
        put_program(host, "%s/%s" % (TOOLS, path.name), path)


def secret_file(host, redis, name):
    """The instance's application password in a root-only file, for a program's stdin (never on a
    command line)."""
    path = "/root/.flood-%s" % name
    put_file(host, path, redis.credentials[name] + "\n", mode="0600")
    return path


@before_reboot
def test_a_600mb_unfinished_request_to_the_cache_while_the_queue_fills(host, redis, instances):
    install_tools(host)
    port = {name: int(instances[name]["config"].get("port", default)) for name, default in (("cache", 6379), ("queue", 6380))}
    queue_max = int(redis.config("queue", "maxmemory"))
    # Fill the queue to about 90 % of its maxmemory from what it holds now (acknowledged or refused:
    # noeviction says OOM once full; the refused ones are not counted).
    used = int(redis.info("queue", "memory")["used_memory"])
    count = max(2000, (queue_max * 9 // 10 - used) // (VALUE + 100))
    before = {name: unit_state(host, instances[name]["service"]) for name in ("cache", "queue")}
    stats = redis.info("cache", "stats")
    since = host.check_output("date +%s")
    bounds = redis.configs("cache", list(CUT_COUNTERS))
    if UNBOUNDED:
        redis.run("cache", "CONFIG", "SET", "client-query-buffer-limit", "1gb", "maxmemory-clients", "0")
    try:
        queue_pw, cache_pw = secret_file(host, redis, "queue"), secret_file(host, redis, "cache")
        host.run_test("rm -f /tmp/flood-fill.log; (nohup python3 %s/queue_fill.py write %d %d %d /tmp/flood-fill.log "
                      "< %s > /tmp/flood-fill.out 2>&1 &)" % (TOOLS, port["queue"], count, VALUE, queue_pw))
        # The flood starts once the writer has writes acknowledged, and must end before it does.
        host.run_test("for i in $(seq 1 300); do grep -q '^ack 500$' /tmp/flood-fill.log 2>/dev/null && break; "
                      "sleep 0.2; done")
        flood = host.run("timeout 600 python3 %s/flood.py %d many %d < %s"
                         % (TOOLS, port["cache"], FLOOD_MB * 1000 * 1000, cache_pw))
        writer_busy = host.run("grep -q '^end' /tmp/flood-fill.log").rc != 0
        host.run_test("for i in $(seq 1 1800); do grep -q '^end' /tmp/flood-fill.log && break; sleep 0.5; done")
    finally:
        if UNBOUNDED:
            redis.run("cache", "CONFIG", "SET", *[word for pair in bounds.items() for word in pair], check=False)
    after = {name: unit_state(host, instances[name]["service"]) for name in ("cache", "queue")}
    kernel = host.run("journalctl -k --no-pager --since @%s" % since.strip()).stdout
    assert not OOM.search(kernel), "the kernel killed something: %s" % kernel[-2000:]
    for name in ("queue", "cache"):
        assert after[name] == before[name], "%s was restarted or killed: %s -> %s" % (name, before[name], after[name])
    assert flood.rc == 0, flood.stdout + flood.stderr
    said = json.loads(flood.stdout)
    assert writer_busy, "the writer ended before the flood did: they did not overlap (%s)" % said
    checked = json.loads(host.check_output("python3 %s/queue_fill.py check %d %d /tmp/flood-fill.log < %s"
                                           % (TOOLS, port["queue"], VALUE, queue_pw)))
    host.run("rm -f /root/.flood-cache /root/.flood-queue")
    assert checked["acknowledged"] > 1000 and checked["missing"] == 0, checked
    assert said["cut"] and said["sent_mb"] < 100, "the cache took the flood in: %s" % said
    now = redis.info("cache", "stats")
    fired = {bound: int(now.get(counter, 0)) - int(stats.get(counter, 0)) for bound, counter in CUT_COUNTERS.items()}
    log = host.run("grep -c 'closing client that reached max query buffer length' %s"
                   % instances["cache"]["config"]["logfile"]).stdout.strip()
    assert any(fired.values()), "the client was cut, but by neither bound (INFO stats %s)" % fired
    with FIGURES.open("a") as figures:
        figures.write("flood: %s MB sent of %d, cut by %s (INFO stats deltas %s; query-buffer lines in the log: %s); "
                      "the queue got %d writes acknowledged meanwhile (%d refused), none lost\n"
                      % (said["sent_mb"], FLOOD_MB, [b for b, n in fired.items() if n], fired, log,
                         checked["acknowledged"],
                         int(host.check_output("grep -c '^err' /tmp/flood-fill.log || true") or 0)))
