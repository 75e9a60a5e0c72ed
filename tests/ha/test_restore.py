"""playbooks/restore.yml on redis_ha (issue 20, item 2; molecule/ha, after test_ha.py): a replica is
refused with nothing changed, naming the primary; the primary is restored with a dataset whose load
takes longer than the Sentinels' down-after, and then every node has the snapshot's data and the
primary is the same host (without the group's Sentinels stopped, they promote an unrestored replica
while the primary loads, and the restored data is replaced by it)."""
import re
import time

import pytest
from helpers import INVENTORY, REPO, fill, playbook
from test_ha import FIGURES, nodes, primary_of, wait_role  # noqa: F401  (nodes: a fixture)

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs molecule/ha's inventory")

RESTORE = REPO / "playbooks" / "restore.yml"
BACKUP = REPO / "playbooks" / "backup.yml"


def keys_of(node):
    """The queue's key count, every database (INFO keyspace)."""
    return sum(int(v.split(",")[0].split("=")[1]) for v in node.redis.info("queue", "keyspace").values())


def sentinels_active(nodes):
    return {n.name: n.host.run("systemctl is-active %s" % n.vars.get("redis_engine", "redis") + "-sentinel.service").stdout.strip()
            for n in nodes}


def test_restoring_a_replica_is_refused_naming_the_primary_and_changes_nothing(nodes):
    primary = primary_of(nodes)
    replica = [n for n in nodes if n is not primary][0]
    run_ids = {n.name: n.redis.info("queue", "server")["run_id"] for n in nodes}
    rc, out = playbook(path=RESTORE, limit=replica.name)
    assert rc != 0, out[-2000:]
    assert "is a replica in redis_ha, whose primary is %s" % primary.name in out, out[-2000:]
    assert "--limit %s" % primary.name in out and "Nothing was changed" in out
    assert {n.name: n.redis.info("queue", "server")["run_id"] for n in nodes} == run_ids
    assert set(sentinels_active(nodes).values()) == {"active"}
    assert primary_of(nodes) is primary


def test_restoring_the_primary_puts_the_snapshot_on_every_node_and_keeps_the_primary(nodes):
    primary = primary_of(nodes)
    replicas = [n for n in nodes if n is not primary]
    out = fill(primary.host, primary.redis, "queue", "restore", 20000, 100)
    assert "errors: 0" in out, out
    primary.redis.run("queue", "SET", "restore:marker", "backed-up")
    for n in replicas:
        deadline = time.monotonic() + 60
        while n.redis.run("queue", "GET", "restore:marker") != "backed-up":
            assert time.monotonic() < deadline, "%s did not replicate the dataset" % n.name
            time.sleep(0.5)
    rc, out = playbook(path=BACKUP, limit=primary.name)
    assert rc == 0, out[-3000:]
    # What the restore must undo, on every node.
    primary.redis.run("queue", "SET", "restore:marker", "changed after the backup")
    primary.redis.run("queue", "SET", "restore:new", "made after the backup")
    primary.redis.run("queue", "DEL", "restore:7")
    # Slow the primary's load (Redis's key-load-delay, microseconds per key) to about 12 s,
    # more than twice the Sentinels' down-after (5 s).
    delay = max(100, 12_000_000 // keys_of(primary))
    conf = primary.redis.instances["queue"]["conf"]
    primary.host.run_test("echo 'key-load-delay %d' >> %s" % (delay, conf))
    try:
        rc, out = playbook(path=RESTORE, limit=primary.name)
    finally:
        primary.host.run_test("sed -i '/^key-load-delay /d' %s" % conf)
        primary.redis.run("queue", "CONFIG", "SET", "key-load-delay", "0", check=False)
    assert rc == 0, out[-3000:]
    log = primary.host.run("grep 'DB loaded from disk' %s | tail -1" % primary.redis.instances["queue"]["config"]["logfile"]).stdout
    loaded = float(re.search(r"DB loaded from disk: ([0-9.]+) seconds", log).group(1))
    down_after = int(primary.vars.get("redis_ha_down_after_ms", 5000)) / 1000
    assert loaded > down_after, "the load took %.1f s, not longer than down-after (%.0f s): the test proves nothing" % (
        loaded, down_after)
    assert primary_of(nodes) is primary, "the Sentinels promoted another host during the restore"
    assert set(sentinels_active(nodes).values()) == {"active"}
    want = keys_of(primary)
    for n in nodes:
        if n is not primary:
            wait_role(n, "slave")
        assert n.redis.run("queue", "GET", "restore:marker") == "backed-up", n.name
        assert n.redis.run("queue", "EXISTS", "restore:new") == "0", n.name
        assert n.redis.run("queue", "GET", "restore:7") == "x" * 100, n.name
        assert keys_of(n) == want, "%s has %d keys, the restored primary %d" % (n.name, keys_of(n), want)
    with FIGURES.open("a") as figures:
        figures.write("restore on the primary: load %.1f s (key-load-delay %d us), %d keys on every node\n"
                      % (loaded, delay, want))
