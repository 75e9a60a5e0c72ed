"""Rolling restarts of the replicated queue (issue 20, item 3; molecule/ha, after test_ha.py): a rerun
that needs a restart of every node's queue (a restart-only setting: hz, taken out of
redis_live_settings) restarts one queue at a time, the replicas first, the primary last after a
Sentinel failover, under a client writing through 127.0.0.1:6380: no acknowledged write lost, the
longest pause of the writes at most a failover's (test_ha.py's bound), every node back with the new
setting. Then the same back to the default, and a rerun that changes nothing.

"Never two queues down at once" is read from systemd, not sampled: each node's queue unit was started
exactly once during the rerun (the journal's "Started" entries), and its down time is systemd's own,
from ActiveExitTimestamp (the stop begun) to ActiveEnterTimestamp (ready again: the units are
Type=notify, Redis says READY once its data is loaded), on the one monotonic clock of the kernel the
containers share."""
import shlex
import time

import pytest
import yaml
from helpers import INVENTORY, REPO, playbook, put_program
from test_ha import FIGURES, WRITER, nodes, primary_of, stored, writer_log  # noqa: F401  (nodes: a fixture)

pytestmark = [pytest.mark.skipif(not INVENTORY, reason="needs molecule/ha's inventory"),
              pytest.mark.timed]   # each restart's gap for the writers

DEFAULTS = yaml.safe_load((REPO / "roles" / "redis" / "defaults" / "main.yml").read_text())
# hz is applied live by default; without it in the list, a new value needs a restart.
RESTART_HZ = [name for name in DEFAULTS["redis_live_settings"] if name != "hz"]
POLL = 0.2


def background(node, command, secret_env=""):
    """Start `command` in the background on the node; its process id (stopped by that id). A password
    goes in `secret_env` (NAME=value): in the process's environment, never in its command line."""
    return int(node.host.check_output("%s nohup sh -c %s > /dev/null 2>&1 & echo $!" % (secret_env, shlex.quote(command))))


def start_poller(node, log):
    """Every POLL s: the time and the queue's answer to ROLE (first line) over its socket, as admin."""
    return background(node, "while :; do r=$(timeout 2 %s --no-auth-warning -s %s --user admin ROLE 2>&1 | head -1); "
                            "echo \"$(date +%%s.%%N) $r\"; sleep %s; done > %s" % (
                                node.cli, node.redis.socket("queue"), POLL, log),
                      "REDISCLI_AUTH=%s" % shlex.quote(node.credentials["admin"]))


# systemd's "Started <unit>" journal entry (sd-messages.h SD_MESSAGE_UNIT_STARTED).
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"


def unit_times(node):
    """The queue unit's ActiveExit/ActiveEnter times (monotonic, microseconds) and its type."""
    out = node.host.check_output("systemctl show -p Type -p ActiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic %s"
                                 % node.redis.instances["queue"]["service"])
    return dict(line.split("=", 1) for line in out.splitlines())


def starts_since(node, realtime):
    """How many times systemd started the queue unit since `realtime` (seconds since the epoch)."""
    out = node.host.check_output("journalctl -q --no-pager -o cat -u %s --since @%d MESSAGE_ID=%s"
                                 % (node.redis.instances["queue"]["service"], int(realtime), UNIT_STARTED))
    return len([line for line in out.splitlines() if line.strip()])


def downtimes(nodes, since_realtime, since_monotonic):
    """name -> (from, to): each node's queue down, in systemd's monotonic seconds. Checks that the
    rerun started each queue once (so that one span per node is all of its down time)."""
    spans = {}
    for n in nodes:
        times = unit_times(n)
        assert times["Type"] == "notify", "%s: the queue unit is Type=%s: its ActiveEnter is not 'ready'" % (
            n.name, times["Type"])
        started = starts_since(n, since_realtime - 1)
        assert started == 1, "%s: its queue was started %d times during the rerun" % (n.name, started)
        down, up = int(times["ActiveExitTimestampMonotonic"]) / 1e6, int(times["ActiveEnterTimestampMonotonic"]) / 1e6
        assert since_monotonic < down < up, "%s: no stop and start of its queue in the rerun (%s)" % (n.name, times)
        spans[n.name] = (down, up)
    return spans


def clocks(node):
    """(realtime, monotonic) on the node now: the kernel's CLOCK_MONOTONIC is the one systemd's
    *Monotonic times use."""
    out = node.host.check_output("python3 -c 'import time; print(time.time(), time.monotonic())'")
    return tuple(float(word) for word in out.split())


def roles_before(node, log, moment):
    """The last role the node's queue answered before `moment`."""
    said = ""
    for line in node.host.file(log).content_string.splitlines():
        when, _, answer = line.partition(" ")
        if float(when) < moment and answer.strip() in ("master", "slave"):
            said = answer.strip()
    return said


def rolling_rerun(nodes, tmp_path, extra_vars, label, hz):
    primary = primary_of(nodes)
    client = [n for n in nodes if n is not primary][0]
    prefix = "roll%d" % int(time.time())
    put_program(client.host, WRITER, REPO / "tests" / "ha" / "writer.py")
    pollers = {n.name: start_poller(n, "/tmp/%s-poll.log" % prefix) for n in nodes}
    writer = background(client, "exec python3 %s 6380 1200 0.01 /tmp/%s.log %s" % (WRITER, prefix, prefix),
                        "REDIS_PASSWORD=%s" % shlex.quote(client.credentials["queue"]))
    run_ids = {n.name: n.redis.info("queue", "server")["run_id"] for n in nodes}
    try:
        time.sleep(3)
        since_realtime, since_monotonic = clocks(client)
        started = time.monotonic()
        rc, out = playbook(extra_vars=extra_vars, tmp_path=tmp_path)
        took = time.monotonic() - started
        time.sleep(3)
    finally:
        client.host.run("kill %d" % writer)
        for n in nodes:
            n.host.run("kill %d" % pollers[n.name])
    (tmp_path / "playbook.log").write_text(out)       # the whole output, for a failure's post-mortem
    assert rc == 0, out[-4000:]
    acks, errors = writer_log(client, prefix, 0)
    now = primary_of(nodes)
    have = stored(now, prefix)
    lost = sorted(n for n in acks if n not in have)
    assert not lost, "%s: %d acknowledged writes lost, e.g. %s" % (label, len(lost), lost[:5])
    times = sorted(acks.values())
    gap = max(b - a for a, b in zip(times, times[1:]))
    # Every queue restarted (its new run_id says it), at most one down at any moment: no two nodes'
    # systemd down spans overlap.
    assert all(n.redis.info("queue", "server")["run_id"] != run_ids[n.name] for n in nodes), "%s: not restarted" % label
    spans = downtimes(nodes, since_realtime, since_monotonic)
    flat = sorted((a, b, name) for name, (a, b) in spans.items())
    for (a1, b1, n1), (a2, b2, n2) in zip(flat, flat[1:]):
        assert a2 > b1, "%s: %s and %s were down at the same time (%.3f-%.3f, %.3f-%.3f)" % (
            label, n1, n2, a1, b1, a2, b2)
    # The primary last, and a replica by then (the failover came first).
    starts = {name: b for name, (a, b) in spans.items()}
    last = max(starts, key=starts.get)
    assert last == primary.name, "%s: the primary %s was not restarted last (%s was)" % (label, primary.name, last)
    stopped = spans[primary.name][0] + since_realtime - since_monotonic      # in the poller's realtime
    assert roles_before(primary, "/tmp/%s-poll.log" % prefix, stopped) == "slave", \
        "%s: the primary was restarted before it had handed its role over" % label
    assert now is not primary, "%s: no failover happened" % label
    for n in nodes:
        for instance in ("queue", "cache"):
            assert n.redis.config(instance, "hz") == str(hz), (label, n.name, instance)
    assert gap < 15, "%s: the writes paused %.1f s (a failover's bound is 15 s)" % (label, gap)
    with FIGURES.open("a") as figures:
        figures.write("%s: rerun %.0f s; %d writes acknowledged, none lost, %d errors; longest pause %.1f s; "
                      "queue down per node (systemd) %s, in order %s\n" % (
                          label, took, len(acks), len(errors), gap,
                          {name: "%.2f s" % (b - a) for name, (a, b) in spans.items()}, [name for _, _, name in flat]))


def test_a_restart_only_change_restarts_one_queue_at_a_time_the_primary_last(nodes, tmp_path):
    rolling_rerun(nodes, tmp_path, {"redis_live_settings": RESTART_HZ, "redis_hz": 25}, "rolling restart (hz 25)", 25)


# The rerun that must change nothing afterwards is test_ha.py's last timed test, which runs after
# these (conftest.py: timed_order) and the failovers.
def test_back_to_the_default_the_same_way(nodes, tmp_path):
    rolling_rerun(nodes, tmp_path, {"redis_live_settings": RESTART_HZ}, "rolling restart (hz back to 20)",
                  DEFAULTS["redis_hz"])
