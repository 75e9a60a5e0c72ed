"""The replicated queue of redis_ha (molecule/ha): TLS between the hosts, failovers
that keep every acknowledged write and the apps' endpoint (on the hosts of the group
and on an app host of redis_clients, issue 19), reruns that respect Sentinel, a
replaced host that rejoins. The tests run in order and share the
cluster; each failure is made from the controller with docker.

REDIS_VPS_HA_BENCH=N makes the power-off test fail over N times and print the
figures (tools/bench-ha); the figures of every failover go to REDIS_VPS_HA_FIGURES.
"""
import os
import pathlib
import shlex
import subprocess
import time

import pytest
from helpers import (INVENTORY, REPO, Redis, RespHost, changed_count, credentials_of, instances_of,
                     php_session, playbook, put_program)

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs molecule/ha's inventory")

NETWORK = os.environ.get("REDIS_VPS_HA_NETWORK", "redis-vps-ha")
WRITER = "/usr/local/lib/redis-vps-writer.py"
FIGURES = pathlib.Path(os.environ.get("REDIS_VPS_HA_FIGURES", "/tmp/redis-vps-ha-figures.txt"))


class Node:
    def __init__(self, host):
        self.host = host
        self.vars = host.ansible.get_variables()
        self.name = self.vars["inventory_hostname"]
        self.address = self.vars["redis_ha_address"]
        self.credentials = credentials_of(self.vars)
        self.redis = Redis(host, self.credentials, instances_of(self.vars))
        self.cli = self.redis.instances["queue"]["cli"]
        self.tls = os.path.dirname(self.redis.instances["queue"]["conf"]) + "/tls"

    def sentinel(self, *args):
        return self.host.run("REDISCLI_AUTH=%s %s --no-auth-warning -s /run/sentinel/sentinel.sock %s" % (
            shlex.quote(self.credentials["sentinel"]), self.cli, " ".join(shlex.quote(a) for a in args))).stdout.strip()

    def primary_seen(self):
        """The primary's address as this host's Sentinel sees it."""
        return (self.sentinel("SENTINEL", "get-master-addr-by-name", "queue").splitlines() or [""])[0]

    def role(self):
        return self.redis.run("queue", "ROLE", check=False).splitlines()[0]


class App(RespHost):
    """The app host (redis_clients): no Redis server, apps use 127.0.0.1:6379/6380 with the
    group's passwords; its endpoint follows the primary, its cache is the first host's."""

    def __init__(self, host, nodes):
        super().__init__(host)
        self.credentials = {"queue": nodes[0].credentials["queue"], "cache": nodes[0].credentials["cache"]}


@pytest.fixture(scope="module")
def nodes():
    import testinfra
    return [Node(host) for host in testinfra.get_hosts(["ansible://redis_ha"], ansible_inventory=INVENTORY)]


@pytest.fixture(scope="module")
def app(nodes):
    import testinfra
    return App(testinfra.get_hosts(["ansible://redis_clients"], ansible_inventory=INVENTORY)[0], nodes)


def primary_of(nodes, timeout=60, exclude=()):
    """The node the Sentinels of the others agree is the primary (waits for agreement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {n.primary_seen() for n in nodes if n.name not in exclude}
        if len(seen) == 1 and "" not in seen:
            address = seen.pop()
            match = [n for n in nodes if n.address == address]
            if match and match[0].name not in exclude:
                return match[0]
        time.sleep(0.5)
    raise AssertionError("the Sentinels do not agree on a primary")


def wait_role(node, role, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.role() == role and (role == "master" or "master_link_status:up" in node.redis.run("queue", "INFO", "replication")):
            return
        time.sleep(0.5)
    raise AssertionError("%s is not %s after %d s" % (node.name, role, timeout))


def docker(*args):
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=120)


def start_writer(node, prefix, duration):
    put_program(node.host, WRITER, REPO / "tests" / "ha" / "writer.py")
    node.host.run_test("REDIS_PASSWORD=%s nohup python3 %s 6380 %s 0.01 /tmp/%s.log %s > /dev/null 2>&1 &" % (
        shlex.quote(node.credentials["queue"]), WRITER, duration, prefix, prefix))


def writer_log(node, prefix, duration):
    """Wait for the writer's end; (acks: n -> time, errors: [(n, time, text)])."""
    deadline = time.monotonic() + duration + 30
    while node.host.run("pgrep -f '[r]edis-vps-writer.py .* %s$'" % prefix).rc == 0:
        assert time.monotonic() < deadline, "the writer did not end"
        time.sleep(1)
    acks, errors = {}, []
    for line in node.host.file("/tmp/%s.log" % prefix).content_string.splitlines():
        kind, n, when = line.split(" ", 3)[:3]
        if kind == "ack":
            acks[int(n)] = float(when)
        else:
            errors.append((int(n), float(when), line.split(" ", 3)[3] if line.count(" ") >= 3 else ""))
    return acks, errors


def stored(primary, prefix):
    """The numbers of the writer's keys that the primary has (db 2 of the queue)."""
    keys = primary.host.run("%s -n 2 --scan --pattern %s" % (
        primary.redis.cli("queue", "admin", primary.credentials["admin"]), shlex.quote(prefix + ":*"))).stdout.split()
    return {int(key.rsplit(":", 1)[1]) for key in keys}


def check_writes(acks, errors, failed_at, have, label):
    """Every write acknowledged more than 1 s before the failure is there; writes resumed.
    Returns the seconds from the failure to the first write acknowledged after it."""
    assert acks, "no write was acknowledged"
    lost = sorted(n for n, when in acks.items() if when < failed_at - 1.0 and n not in have)
    assert not lost, "%s: %d acknowledged writes missing, e.g. %s" % (label, len(lost), lost[:5])
    failures = [when for _, when, _ in errors if when >= failed_at]
    resumed = [when for when in acks.values() if when > max(failures, default=failed_at)]
    assert resumed, "%s: writes did not resume; last errors %s" % (label, errors[-3:])
    gap = min(resumed) - failed_at
    lost_recent = sum(1 for n, when in acks.items() if n not in have)
    with FIGURES.open("a") as out:
        out.write("%s: first write through the endpoint %.1f s after the failure; %d writes acknowledged, "
                  "%d of them (acknowledged < 1 s before it) not kept; %d errors\n" % (label, gap, len(acks), lost_recent,
                                                                                 len(errors)))
    return gap


def test_replication_and_sentinel_run_over_tls_only(nodes):
    primary = primary_of(nodes)
    info = primary.redis.run("queue", "INFO", "replication")
    assert "connected_slaves:%d" % (len(nodes) - 1) in info, info
    replica = [n for n in nodes if n is not primary][0]
    assert "master_link_status:up" in replica.redis.run("queue", "INFO", "replication")
    for port in (6380, 26379):
        plain = replica.host.run("timeout 5 %s -h %s -p %d PING" % (replica.cli, primary.address, port))
        assert "PONG" not in plain.stdout, "a plain-text connection to %d was answered" % port
        anonymous = replica.host.run("timeout 5 %s --tls --cacert %s/ca.crt -h %s -p %d PING" % (
            replica.cli, replica.tls, primary.address, port))
        assert "PONG" not in anonymous.stdout, "TLS without a client certificate was answered on %d" % port
    with_cert = replica.host.run(
        "REDISCLI_AUTH=%s timeout 5 %s --no-auth-warning --tls --cacert {0}/ca.crt --cert {0}/node.crt --key {0}/node.key "
        "-h %s -p 6380 --user monitor PING".format(replica.tls) % (shlex.quote(replica.credentials["monitor"]), replica.cli,
                                                                  primary.address))
    assert with_cert.stdout.strip() == "PONG", with_cert.stderr
    # Sentinels know each other and both replicas.
    view = dict(zip(*[iter(replica.sentinel("SENTINEL", "MASTER", "queue").splitlines())] * 2))
    assert view["num-other-sentinels"] == str(len(nodes) - 1) and view["num-slaves"] == str(len(nodes) - 1)


def test_apps_write_through_127_0_0_1_6380_on_every_host(nodes):
    for n in nodes:
        out = n.host.run("REDISCLI_AUTH=%s %s --no-auth-warning -p 6380 SET ha:endpoint:%s ok" % (
            shlex.quote(n.credentials["queue"]), n.cli, n.name))
        assert out.stdout.strip() == "OK", (n.name, out.stdout, out.stderr)
    primary = primary_of(nodes)
    for n in nodes:
        assert primary.redis.run("queue", "GET", "ha:endpoint:%s" % n.name) == "ok"


def test_an_app_host_uses_the_primary_and_the_first_hosts_cache(nodes, app):
    assert app.host.run("pgrep -x 'redis-server|valkey-server'").rc != 0, "a Redis server runs on the app host"
    stamp = str(time.time())
    assert app.resp(6380, [["SET", "ha:app", stamp]], app.credentials["queue"]) == ["OK", "OK"]
    assert primary_of(nodes).redis.run("queue", "GET", "ha:app") == stamp
    assert app.resp(6379, [["SET", "ha:app:cache", stamp]], app.credentials["cache"]) == ["OK", "OK"]
    assert nodes[0].redis.run("cache", "GET", "ha:app:cache") == stamp


def test_an_app_host_s_endpoint_recovers_by_itself_after_a_partition(nodes, app):
    docker("network", "disconnect", NETWORK, app.name)
    try:
        time.sleep(4)   # two failed checks, a second apart, and a connect timeout of 1 s
        cut = app.resp(6380, [["PING"]], app.credentials["queue"], check=False)
        assert cut is None, "the endpoint answered through the partition: %s" % cut
    finally:
        docker("network", "connect", "--ip", app.address, NETWORK, app.name)
    back = time.monotonic()
    while app.resp(6380, [["SET", "ha:app:after", "x"]], app.credentials["queue"], check=False) != ["OK", "OK"]:
        assert time.monotonic() - back < 30, "the app host's endpoint did not recover within 30 s of the partition's end"
        time.sleep(0.5)
    assert primary_of(nodes).redis.run("queue", "GET", "ha:app:after") == "x"


@pytest.mark.timed
def test_kill_9_of_the_primary_keeps_every_acknowledged_write(nodes):
    primary = primary_of(nodes)
    client = [n for n in nodes if n is not primary][0]
    start_writer(client, "kill9", 20)
    time.sleep(3)
    failed_at = time.time()
    primary.host.run_test("systemctl kill -s SIGKILL %s" % primary.redis.instances["queue"]["service"])
    acks, errors = writer_log(client, "kill9", 20)
    now = primary_of(nodes)
    check_writes(acks, errors, failed_at, stored(now, "kill9"), "kill -9 of the primary")
    for n in nodes:
        if n is not now:
            wait_role(n, "slave")


def node_session(node, cookie=""):
    return php_session(node.host, "/var/www/ha", cookie)


def power_off_failover(nodes, label, app=None):
    """docker stop of the primary while a client writes through another host's endpoint (and,
    given one, the app host through its own); the old primary comes back as a replica.
    Returns the seconds to the first write (the later of the two clients')."""
    primary = primary_of(nodes)
    clients = [[n for n in nodes if n is not primary][0]] + ([app] if app else [])
    prefix = "off%d" % int(time.time())
    for client in clients:
        start_writer(client, prefix + client.name, 30)
    time.sleep(3)
    failed_at = time.time()
    docker("stop", "-t", "1", primary.name)
    try:
        logs = [writer_log(client, prefix + client.name, 30) for client in clients]
        now = primary_of(nodes, exclude=[primary.name])
        gap = max(check_writes(acks, errors, failed_at, stored(now, prefix + client.name),
                               label + ("" if client is clients[0] else ", the app host's writer"))
                  for client, (acks, errors) in zip(clients, logs))
    finally:
        docker("start", primary.name)
    wait_role(primary, "slave", timeout=90)
    return gap


@pytest.mark.timed
def test_power_off_of_the_primary_fails_over_and_keeps_sessions(nodes, app):
    primary = primary_of(nodes)
    client = [n for n in nodes if n is not primary][0]
    cookie, count = node_session(client)
    gap = power_off_failover(nodes, "power-off of the primary", app)
    assert gap < 15, "writes resumed only %.1f s after the power-off" % gap
    assert primary_of(nodes) is not primary
    _, after = node_session(client, cookie)
    assert after == count + 1, "the PHP session did not survive the failover"
    rounds = int(os.environ.get("REDIS_VPS_HA_BENCH", "0"))
    gaps = [power_off_failover(nodes, "benchmark failover %d" % (i + 1)) for i in range(rounds)]
    if gaps:
        with FIGURES.open("a") as out:
            out.write("benchmark: %d failovers, first write after %.1f-%.1f s (mean %.1f s)\n"
                      % (len(gaps), min(gaps), max(gaps), sum(gaps) / len(gaps)))


@pytest.mark.timed
def test_a_partitioned_primary_stops_taking_writes_and_rejoins_as_a_replica(nodes):
    primary = primary_of(nodes)
    client = [n for n in nodes if n is not primary][0]
    start_writer(client, "partition", 30)
    time.sleep(3)
    failed_at = time.time()
    docker("network", "disconnect", NETWORK, primary.name)
    try:
        time.sleep(int(primary.vars.get("redis_ha_min_replicas_max_lag", 5)) + 3)
        refused = primary.redis.run("queue", "SET", "ha:isolated", "x", check=False)
        assert "NOREPLICAS" in refused, "the isolated old primary took a write: %s" % refused
        acks, errors = writer_log(client, "partition", 30)
        now = primary_of(nodes, exclude=[primary.name])
        check_writes(acks, errors, failed_at, stored(now, "partition"), "network partition of the primary")
    finally:
        docker("network", "connect", "--ip", primary.address, NETWORK, primary.name)
    wait_role(primary, "slave", timeout=90)
    assert now.redis.run("queue", "EXISTS", "ha:isolated") == "0"


@pytest.mark.timed
def test_a_rerun_after_failovers_changes_nothing_and_keeps_the_primary(nodes):
    # (after the rolling restarts too: conftest.py runs test_rolling.py's timed tests first)
    primary = primary_of(nodes)
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
    assert primary_of(nodes) is primary


def test_a_host_replaced_by_a_fresh_one_rejoins_as_a_replica(nodes):
    primary = primary_of(nodes)
    gone = [n for n in nodes if n is not primary][-1]
    primary.redis.run("queue", "SET", "ha:before-replacement", "kept")
    docker("rm", "-f", gone.name)
    subprocess.run(["bash", "-c", 'source "$1/tools/lib.sh"; docker run -d --name "$2" --hostname "$2" --network "$3" --ip "$4" '
                    '"${LAB_DOCKER_OPTS[@]}" "$(base_image trixie)" /sbin/init >/dev/null; wait_for_systemd "$2"', "-",
                    str(REPO), gone.name, NETWORK, gone.address], check=True, timeout=120)
    rc, out = playbook()
    assert rc == 0, out[-3000:]
    wait_role(gone, "slave", timeout=90)
    assert gone.redis.run("queue", "GET", "ha:before-replacement") == "kept"
    assert primary_of(nodes) is primary
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
