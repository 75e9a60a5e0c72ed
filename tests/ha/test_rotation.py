"""Rotation of the replication and Sentinel passwords on redis_ha (issue 17; molecule/ha, after
the other tests), with PHP sessions' own: `playbooks/rotate.yml -e redis_rotate=replica,sentinel,session`,
then the same with
`-e redis_rotate_retire=true`, each under a client writing through 127.0.0.1:6380: no
acknowledged write lost, no error, nothing restarted (the queues' run_ids, the Sentinels' and
HAProxy's and PHP-FPM's master PIDs), no replication link dropped (the primary's resync counters), both passwords
working in between and only the new ones after, a PHP session kept throughout; a site.yml rerun after each phase changes
nothing; a Sentinel failover afterwards (fenced, as the role's rolling restart does), under the
writer, loses no acknowledged write."""
import shlex
import time

import pytest
from helpers import INVENTORY, REPO, changed_count, credentials_of, php_session, playbook, put_program
from test_ha import FIGURES, WRITER, nodes, primary_of, stored, writer_log  # noqa: F401  (nodes: a fixture)
from test_rolling import background

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs molecule/ha's inventory")

ROTATE = REPO / "playbooks" / "rotate.yml"
NAMES = ("replica", "sentinel", "session")


def fixed(nodes):
    """What must not move: every queue's run_id, every Sentinel's and HAProxy's main PID."""
    out = {}
    for n in nodes:
        pids = n.host.check_output("systemctl show -p MainPID --value %s haproxy.service" % n.vars.get(
            "redis_engine", "redis") + "-sentinel.service").split()
        fpm = n.host.check_output("pgrep -f '^php-fpm: master'")
        out[n.name] = (n.redis.info("queue", "server")["run_id"], tuple(pids), fpm)
    return out


def resyncs(node):
    """The primary's count of replicas' (re)synchronisations: a dropped link that comes back adds one."""
    stats = node.redis.info("queue", "stats")
    return int(stats["sync_full"]), int(stats["sync_partial_ok"]), int(stats["sync_partial_err"])


def auth(node, port_args, user, password):
    """Whether `user` logs in with `password` (redis-cli over the given socket/TLS arguments)."""
    out = node.host.run("REDISCLI_AUTH=%s timeout 5 %s --no-auth-warning %s %s PING" % (
        shlex.quote(password), node.cli, port_args, "--user %s" % user if user else ""))
    return out.stdout.strip() == "PONG"


def tls_args(node, to):
    return "--tls --cacert {0}/ca.crt --cert {0}/node.crt --key {0}/node.key -h {1} -p 6380".format(node.tls, to.address)


def check_logins(nodes, creds, works):
    """The replica and sentinel users on every queue, and every Sentinel's own password."""
    for n in nodes:
        for user in NAMES:
            assert auth(n, tls_args(n, n), user, creds[user]) is works, (n.name, user, works)
        assert auth(n, "-s /run/sentinel/sentinel.sock", None, creds["sentinel"]) is works, (n.name, "Sentinel", works)


def endless_writer(client, prefix):
    """A client writing numbered keys (PREFIX:N) through its host's endpoint every 10 ms until
    killed (at most 20 minutes); returns its PID. writer_log reads what it acknowledged."""
    put_program(client.host, WRITER, REPO / "tests" / "ha" / "writer.py")
    return background(client, "exec python3 %s 6380 1200 0.01 /tmp/%s.log %s" % (WRITER, prefix, prefix),
                      "REDIS_PASSWORD=%s" % shlex.quote(client.credentials["queue"]))


def under_writer(nodes, tmp_path, label, *args):
    """rotate.yml with `args` while a client writes through another host's endpoint; checks the writes."""
    primary = primary_of(nodes)
    client = [n for n in nodes if n is not primary][0]
    prefix = "rot%d" % int(time.time())
    writer = endless_writer(client, prefix)
    before, synced = fixed(nodes), resyncs(primary)
    try:
        time.sleep(2)
        started = time.monotonic()
        rc, out = playbook(*args, path=ROTATE)
        took = time.monotonic() - started
        time.sleep(2)
    finally:
        client.host.run("kill %d" % writer)
    (tmp_path / "rotate.log").write_text(out)
    assert rc == 0, out[-4000:]
    acks, errors = writer_log(client, prefix, 0)
    assert acks and not errors, "%s: %d writes failed, e.g. %s" % (label, len(errors), errors[:3])
    have = stored(primary, prefix)
    lost = sorted(n for n in acks if n not in have)
    assert not lost, "%s: %d acknowledged writes lost, e.g. %s" % (label, len(lost), lost[:5])
    assert primary_of(nodes) is primary, "%s: the primary changed" % label
    assert fixed(nodes) == before, "%s: a queue, a Sentinel or HAProxy was restarted" % label
    assert resyncs(primary) == synced, "%s: a replica's link dropped and resynchronised" % label
    info = primary.redis.run("queue", "INFO", "replication")
    assert "connected_slaves:%d" % (len(nodes) - 1) in info, info
    view = dict(zip(*[iter(primary.sentinel("SENTINEL", "MASTER", "queue").splitlines())] * 2))
    assert view["num-other-sentinels"] == str(len(nodes) - 1) and view["flags"] == "master", view
    with FIGURES.open("a") as figures:
        figures.write("%s: %.0f s, %d writes acknowledged, none lost, no error\n" % (label, took, len(acks)))
    return out


def test_replica_sentinel_and_session_rotate_live_under_a_writer(nodes, tmp_path):
    old = dict(nodes[0].credentials)
    php = nodes[-1]
    cookie, count = php_session(php.host, "/var/www/ha")
    try:
        out = under_writer(nodes, tmp_path, "rotation of %s, phase 1" % ",".join(NAMES), "-e", "redis_rotate=" + ",".join(NAMES))
        new = credentials_of(nodes[0].vars)
        for name in NAMES:
            assert new[name] != old[name], name
        for value in [new[n] for n in NAMES] + [old[n] for n in NAMES]:
            assert value not in out
        for n in nodes:
            n.credentials.update(new)
            for name in NAMES:
                assert n.host.run("cat /etc/redis-vps/credentials/%s" % name).stdout.strip() == new[name]
                assert n.host.file("/etc/redis-vps/credentials/%s.retiring" % name).mode == 0o600
            assert n.redis.run("queue", "CONFIG", "GET", "masterauth").splitlines()[1] == new["replica"]
        check_logins(nodes, old, True)
        check_logins(nodes, new, True)
        assert php_session(php.host, "/var/www/ha", cookie)[1] == count + 1, "the PHP session was lost"
        rc, out = playbook()
        assert rc == 0 and changed_count(out) == 0, out[-3000:]

        under_writer(nodes, tmp_path, "rotation of %s, phase 2" % ",".join(NAMES),
                     "-e", "redis_rotate=" + ",".join(NAMES), "-e", "redis_rotate_retire=true")
        check_logins(nodes, old, False)
        check_logins(nodes, new, True)
        assert php_session(php.host, "/var/www/ha", cookie)[1] == count + 2, "the PHP session was lost"
        for n in nodes:
            for name in NAMES:
                assert not n.host.file("/etc/redis-vps/credentials/%s.retiring" % name).exists
        rc, out = playbook()
        assert rc == 0 and changed_count(out) == 0, out[-3000:]
    finally:
        for n in nodes:
            n.credentials.update(credentials_of(n.vars))


def test_a_failover_after_the_rotation_loses_no_acknowledged_write(nodes):
    """(After the test above: the group has the new passwords only.) A Sentinel failover under the writer:
    Sentinel logs in to the queues, the replicas to the new primary, with the new passwords. Fenced first
    (min-replicas-to-write raised until every replica has the primary's last write, as the role's rolling
    restart does): a bare SENTINEL FAILOVER drops what the old primary acknowledged after the promotion."""
    for n in nodes:
        n.credentials.update(credentials_of(n.vars))
    primary = primary_of(nodes)
    client = [n for n in nodes if n is not primary][0]
    prefix = "rotfo%d" % int(time.time())
    writer = endless_writer(client, prefix)
    fence = primary.redis.run("queue", "CONFIG", "GET", "min-replicas-to-write").splitlines()[1]
    try:
        time.sleep(2)
        primary.redis.run("queue", "CONFIG", "SET", "min-replicas-to-write", "1000")
        deadline = time.monotonic() + 60
        while True:
            info = primary.redis.info("queue", "replication")
            offsets = [dict(p.split("=") for p in v.split(","))["offset"] for k, v in info.items() if k.startswith("slave")]
            if len(offsets) == len(nodes) - 1 and set(offsets) == {info["master_repl_offset"]}:
                break
            assert time.monotonic() < deadline, "the replicas did not catch up"
            time.sleep(0.2)
        assert primary.sentinel("SENTINEL", "FAILOVER", "queue") == "OK"
        while primary_of(nodes) is primary:
            assert time.monotonic() < deadline, "no failover after the rotation"
            time.sleep(0.5)
        now = primary_of(nodes)
        while "connected_slaves:%d" % (len(nodes) - 1) not in now.redis.run("queue", "INFO", "replication"):
            assert time.monotonic() < deadline, "the replicas did not follow the new primary"
            time.sleep(0.5)
        time.sleep(3)
    finally:
        client.host.run("kill %d" % writer)
        # The setting back, and in the file (Sentinel's demotion rewrote it with the fence).
        primary.redis.run("queue", "CONFIG", "SET", "min-replicas-to-write", fence, check=False)
        primary.redis.run("queue", "CONFIG", "REWRITE", check=False)
    acks, errors = writer_log(client, prefix, 0)
    have = stored(now, prefix)
    lost = sorted(n for n in acks if n not in have)
    assert acks and not lost, "failover after the rotation: %d acknowledged writes lost, e.g. %s" % (len(lost), lost[:5])
    assert max(acks) > max([n for n, _, _ in errors] or [0]), "writes did not resume after the failover"
    with FIGURES.open("a") as figures:
        figures.write("failover after the rotation: %d writes acknowledged, none lost, %d refused while fenced\n"
                      % (len(acks), len(errors)))
