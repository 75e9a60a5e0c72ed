"""A hostile app, or anyone who reads a PHP config, on a host of redis_ha (molecule/ha, issue 20):
it cannot steer the failover with a forged Sentinel hello, nor read a password setting with the
monitor user, nor copy the queue through the local endpoint with the monitor password. Runs after
test_ha.py, on the same cluster.
"""
import shlex
import time

import pytest
from helpers import INVENTORY
from test_ha import nodes, primary_of  # noqa: F401  (nodes: a fixture)

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs molecule/ha's inventory")


def local(node, user, password, *args):
    """A command through the apps' endpoint 127.0.0.1:6380 (HAProxy, to the primary), as `user`."""
    out = node.host.run("REDISCLI_AUTH=%s timeout 10 %s --no-auth-warning -h 127.0.0.1 -p 6380 --user %s %s" % (
        shlex.quote(password), node.cli, user, " ".join(shlex.quote(str(a)) for a in args)))
    return (out.stdout + out.stderr).strip()


def forged_hello(nodes, primary):
    """A hello as a Sentinel sends it, from a Sentinel that does not exist, naming an unreachable
    host as the primary of `queue` with an epoch far above the real one."""
    epoch = int(dict(zip(*[iter(primary.sentinel("SENTINEL", "MASTER", "queue").splitlines())] * 2))
                ["config-epoch"]) + 1000
    return "192.0.2.66,26379,%s,%d,queue,192.0.2.66,6380,%d" % ("f" * 40, epoch, epoch)


def test_a_forged_sentinel_hello_from_an_app_is_refused_and_the_primary_stays(nodes):
    primary = primary_of(nodes)
    app = [n for n in nodes if n is not primary][0]
    hello = forged_hello(nodes, primary)
    for _ in range(5):
        said = local(app, "default", app.credentials["queue"], "PUBLISH", "__sentinel__:hello", hello)
        assert "NOPERM" in said, said
        time.sleep(1)
    assert "NOPERM" in local(app, "default", app.credentials["queue"], "SUBSCRIBE", "__sentinel__:hello")
    time.sleep(15)        # what it took the forged hello to move the primary (issue 20)
    assert primary_of(nodes) is primary
    for n in nodes:
        assert n.primary_seen() == primary.address, n.name
        assert "192.0.2.66" not in n.sentinel("SENTINEL", "SENTINELS", "queue")
    # The apps still have the queue; pub/sub is the cache's (README: where pub/sub belongs).
    assert local(app, "default", app.credentials["queue"], "SET", "hostile:ok", "1") == "OK"
    assert app.redis.run("cache", "ACL", "DRYRUN", "default", "PUBLISH", "orders", "x") == "OK"


def test_the_monitor_user_reads_no_password_setting(nodes):
    for n in nodes:
        for setting in ("masterauth", "requirepass", "*"):
            said = n.redis.run("queue", "CONFIG", "GET", setting, user="monitor", password=n.credentials["monitor"],
                               check=False)
            assert "NOPERM" in said or "no permissions" in said, (n.name, setting)
            assert n.credentials["replica"] not in said


def test_the_monitor_password_copies_nothing_through_the_local_endpoint(nodes):
    """HAProxy forwards a local connection to the primary with the node's client certificate: with
    only the monitor password, a local user gets no key and no replication stream."""
    primary = primary_of(nodes)
    node = [n for n in nodes if n is not primary][0]
    password = node.credentials["monitor"]
    assert local(node, "monitor", password, "PING") == "PONG"
    for command in (["PSYNC", "?", "-1"], ["SYNC"], ["GET", "ha:endpoint:%s" % node.name], ["SCAN", "0"],
                    ["CONFIG", "GET", "masterauth"], ["DUMP", "ha:endpoint:%s" % node.name]):
        said = local(node, "monitor", password, *command)
        assert "NOPERM" in said or "no permissions" in said, (command, said[:200])
    replicated = node.host.run("REDISCLI_AUTH=%s timeout 10 %s --no-auth-warning -h 127.0.0.1 -p 6380 --user monitor "
                               "--rdb /tmp/hostile.rdb" % (shlex.quote(password), node.cli))
    assert replicated.rc != 0 and not node.host.file("/tmp/hostile.rdb").exists
