"""The rolling restart's decisions in plugins/modules/redis_sentinel.py (issue 20): when the replicas have
every write of a fenced primary, when a restarted queue replicates again, and the config file the
old primary keeps for its restart."""
from ansible_collections.redis_vps.server.plugins.modules import redis_sentinel as mod

PRIMARY_INFO = """# Replication
role:master
connected_slaves:2
slave0:ip=172.29.1.12,port=6380,state=online,offset=1500,lag=0
slave1:ip=172.29.1.13,port=6380,state=online,offset=1400,lag=1
master_replid:abc
master_repl_offset:1500
"""
KNOWN = [("172.29.1.12", "6380", "slave"), ("172.29.1.13", "6380", "slave")]


def test_info_fields_reads_the_replica_lines():
    info = mod.info_fields(PRIMARY_INFO)
    assert info["role"] == "master" and info["master_repl_offset"] == "1500"
    assert [r["ip"] for r in mod.replicas_of(info)] == ["172.29.1.12", "172.29.1.13"]


def test_caught_up_waits_for_every_replica_at_the_fence_offset():
    info = mod.info_fields(PRIMARY_INFO)
    assert not mod.caught_up(info, 1500, KNOWN)          # the second one is 100 bytes behind
    assert mod.caught_up(mod.info_fields(PRIMARY_INFO.replace("offset=1400", "offset=1500")), 1500, KNOWN)


def test_caught_up_wants_every_replica_sentinel_could_promote():
    # A replica Sentinel knows (and does not hold down) that is not connected to the primary:
    # Sentinel might promote it, and it lacks the last writes.
    one = mod.info_fields("role:master\nslave0:ip=172.29.1.12,port=6380,state=online,offset=1500,lag=0\n")
    assert not mod.caught_up(one, 1500, KNOWN)
    assert mod.caught_up(one, 1500, [KNOWN[0], ("172.29.1.13", "6380", "s_down,slave,disconnected")])
    assert not mod.caught_up(mod.info_fields("role:master\n"), 0, [])     # no replica: no failover
    syncing = PRIMARY_INFO.replace("state=online,offset=1400", "state=wait_bgsave,offset=1500")
    assert not mod.caught_up(mod.info_fields(syncing), 1500, KNOWN)


def test_synced_needs_the_link_up_and_no_sync():
    up = mod.info_fields("role:slave\nmaster_host:172.29.1.12\nmaster_link_status:up\nmaster_sync_in_progress:0\n")
    assert mod.synced(up) and mod.synced(up, "172.29.1.12") and not mod.synced(up, "172.29.1.13")
    assert not mod.synced(dict(up, master_link_status="down"))
    assert not mod.synced(dict(up, master_sync_in_progress="1"))
    assert not mod.synced(mod.info_fields(PRIMARY_INFO))


def test_with_replicaof_keeps_the_roles_file_and_names_the_new_primary():
    ours = "# Written by the role\nport 0\ntls-port 6380\nhz 25\n"
    out = mod.with_replicaof(ours, "172.29.1.12", "6380")
    assert out == ours + "\n" + mod.KEPT + "\nreplicaof 172.29.1.12 6380\n"
    # A file that named another primary (or used the old slaveof) keeps one line, the new one.
    again = mod.with_replicaof(out.replace("replicaof 172.29.1.12", "slaveof 172.29.1.13"), "172.29.1.13", "6380")
    assert again.count("replicaof") == 1 and "slaveof" not in again and again.count(mod.KEPT) == 1
    assert "replicaof 172.29.1.13 6380" in again and "hz 25" in again
