"""App servers on other VPSes (molecule/apps, docs/apps.md): one Redis VPS, two PHP app
VPSes (Debian 13 and 12) on a network of their own, a probe container outside the
inventory. Apps on each app host use 127.0.0.1:6379/6380, carried by HAProxy over mutual
TLS to the Redis host; nothing between the VPSes speaks plain RESP, and only the app
hosts of the inventory get in. The tests share the hosts and run in file order (the
removed-app-host test puts the host back at its end).
"""
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import time

import pytest
import yaml
from helpers import INVENTORY, REPO, RESP_CLIENT as CLIENT, RespHost, changed_count, credentials_of, php_session, playbook

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs molecule/apps' inventory")

PROBE = os.environ.get("REDIS_VPS_APPS_PROBE", "apps-probe")
NETWORK = os.environ.get("REDIS_VPS_APPS_NETWORK", "redis-vps-apps")
PORTS = (22, 6379, 6380, 9121, 9122, 26379, 80, 443)


class Vps(RespHost):
    """A host of the scenario; resp() talks to its 127.0.0.1 as its apps do."""

    def limiter(self, key, limit, window, password):
        out = self.host.run("REDIS_PASSWORD=%s python3 %s 6379 --limiter %s %d %s" % (
            shlex.quote(password), CLIENT, key, limit, window))
        assert out.rc == 0, out.stderr[-300:]
        return json.loads(out.stdout)[1]


@pytest.fixture(scope="module")
def hosts():
    import testinfra
    out = {}
    for group in ("redis_servers", "php_servers"):
        out[group] = [Vps(h) for h in testinfra.get_hosts(["ansible://" + group], ansible_inventory=INVENTORY)]
    return out


@pytest.fixture(scope="module")
def redis_vps(hosts):
    return hosts["redis_servers"][0]


@pytest.fixture(scope="module")
def apps(hosts):
    return hosts["php_servers"]


@pytest.fixture(scope="module")
def passwords(redis_vps):
    return credentials_of(redis_vps.vars)


def test_app_hosts_run_no_redis_server_and_an_endpoint(apps):
    for app in apps:
        assert app.host.run("pgrep -x redis-server || pgrep -x valkey-server").rc == 1, app.name
        assert app.host.service("haproxy").is_running, app.name
        listening = app.host.run("ss -Htln").stdout
        for port in (6379, 6380):
            assert "127.0.0.1:%d " % port in listening, (app.name, port)
            assert "0.0.0.0:%d " % port not in listening and "*:%d " % port not in listening, (app.name, port)


def test_the_redis_host_listens_tls_on_its_private_address_only(redis_vps, passwords):
    listening = redis_vps.host.run("ss -Htlnp").stdout
    for port in (6379, 6380):
        servers = [line for line in listening.splitlines() if ":%d " % port in line]
        assert any(("%s:%d " % (redis_vps.address, port)) in l and "redis-server" in l for l in servers), servers
        # 127.0.0.1 is HAProxy's: local apps take the same path as the app hosts.
        assert any("127.0.0.1:%d " % port in l and "haproxy" in l for l in servers), servers
        assert not any(("0.0.0.0:%d " % port) in l or ("*:%d " % port) in l for l in servers), servers
    # Plain RESP on the private address: nothing answers it (the ports speak TLS only).
    for port in (6379, 6380):
        reply = redis_vps.host.run("printf 'PING\\r\\n' | timeout 3 bash -c 'cat > /dev/tcp/%s/%d' ; "
                                   "python3 -c \"import socket; s=socket.create_connection(('%s', %d), 3); s.settimeout(3); "
                                   "s.sendall(b'PING\\r\\n'); print(repr(s.recv(100)))\"" % (
                                       redis_vps.address, port, redis_vps.address, port))
        assert "PONG" not in reply.stdout and "NOAUTH" not in reply.stdout, reply.stdout
    # Through the local endpoint, as an app on this host.
    assert redis_vps.resp(6379, [["PING"]], passwords["cache"]) == ["OK", "PONG"]


def test_a_key_written_on_one_app_host_is_read_on_the_other(apps, passwords):
    first, second = apps
    stamp = str(time.time())
    assert first.resp(6379, [["SET", "apps:cache", stamp]], passwords["cache"]) == ["OK", "OK"]
    assert first.resp(6380, [["SELECT", "2"], ["LPUSH", "apps:jobs", stamp]], passwords["queue"])[1] == "OK"
    assert second.resp(6379, [["GET", "apps:cache"]], passwords["cache"]) == ["OK", stamp]
    assert second.resp(6380, [["SELECT", "2"], ["RPOP", "apps:jobs"]], passwords["queue"]) == ["OK", "OK", stamp]


def test_same_users_and_passwords_as_on_a_single_vps(apps, passwords):
    for app in apps:
        assert app.resp(6379, [["PING"]], "wrong-password")[0]["error"].startswith("WRONGPASS")
        assert app.resp(6380, [["AUTH", "admin", passwords["admin"]], ["ACL", "WHOAMI"]])[1] == "admin"
        assert app.resp(6379, [["FLUSHALL"]], passwords["cache"])[1]["error"].startswith("NOPERM")


def test_a_php_session_continues_across_app_hosts(apps):
    first, second = apps
    cookie, count = php_session(first.host, "/var/www/apps-test")
    assert count == 1 and cookie
    assert php_session(second.host, "/var/www/apps-test", cookie) == (cookie, 2)
    assert php_session(first.host, "/var/www/apps-test", cookie) == (cookie, 3)


def test_one_rate_limit_across_both_app_hosts(apps, passwords):
    first, second = apps
    key = "ratelimit:apps-test:%d" % time.time_ns()
    results = [(first if i % 2 == 0 else second).limiter(key, 5, 60, passwords["cache"]) for i in range(8)]
    assert [r["allowed"] for r in results] == [True] * 5 + [False] * 3, results
    # Refused requests are not recorded: the window holds the five allowed ones.
    assert first.resp(6379, [["SELECT", "3"], ["ZCARD", key]], passwords["cache"]) == ["OK", "OK", 5]


def test_nothing_between_the_vpses_answers_plain_resp(apps, redis_vps):
    for app in apps:
        for port in (6379, 6380):
            out = app.host.run("python3 -c \"import socket; s=socket.create_connection(('%s', %d), 3); s.settimeout(3); "
                               "s.sendall(b'PING\\r\\n'); print(repr(s.recv(100)))\"" % (redis_vps.address, port))
            assert "PONG" not in out.stdout and "NOAUTH" not in out.stdout, (app.name, port, out.stdout)
            # ... while the same port speaks TLS with this host's certificate.
            tls = app.host.run("timeout 5 openssl s_client -connect %s:%d -CAfile /etc/haproxy/redis-vps/ca.crt "
                               "-cert /etc/haproxy/redis-vps/haproxy.pem -brief </dev/null" % (redis_vps.address, port))
            assert "Verification: OK" in tls.stdout + tls.stderr, (app.name, port, tls.stderr[-300:])
        # Between the app hosts: nothing listens.
        other = [a for a in apps if a is not app][0]
        for port in (6379, 6380):
            out = app.host.run("timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%d'" % (other.address, port))
            assert out.rc != 0, (app.name, other.name, port)


def test_the_status_play_shows_each_endpoint_and_the_app_hosts_connected(apps, redis_vps):
    rc, out = playbook(path=REPO / "playbooks" / "status.yml")
    assert rc == 0, out[-3000:]
    for name, port in (("cache", 6379), ("queue", 6380)):
        # On each app host: reachable, a round trip, the Redis host behind it.
        assert out.count("%s 127.0.0.1:%d reachable, " % (name, port)) == len(apps), out[-3000:]
        assert "behind it %s %s:%d" % (redis_vps.name, redis_vps.address, port) in out, out[-3000:]
        # On the Redis host: each app host, by name and address.
        assert "app hosts on %s:" % name in out, out[-3000:]
    for app in apps:
        assert "%s (%s): " % (app.name, app.address) in out, out[-3000:]
    assert changed_count(out) == 0


def probe_connects(address, ports):
    """The ports of `ports` the probe container connects to at `address`: every port at once, each
    given 3 s (a dropped connection is only ever a timeout; one after the other took a minute)."""
    script = " ".join("(timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%d' 2>/dev/null && echo %d) &" % (address, port, port)
                      for port in ports) + " wait"
    done = subprocess.run(["docker", "exec", PROBE, "bash", "-c", script], capture_output=True, text=True, timeout=60)
    return sorted(int(port) for port in done.stdout.split())


def test_a_neighbour_outside_the_inventory_reaches_no_port_but_ssh(hosts):
    for vps in hosts["redis_servers"] + hosts["php_servers"]:
        open_ports = probe_connects(vps.address, PORTS)
        assert 22 in open_ports, (vps.name, "the probe does not reach SSH: it would prove nothing", open_ports)
        assert set(open_ports) <= {22}, (vps.name, open_ports)
    # Nor the TLS ports with a certificate of its own making: the firewall drops it first.


def test_an_app_host_s_endpoint_recovers_by_itself_after_a_partition(apps, passwords):
    """The app host loses its network (the Redis host is out of reach: the endpoint's checks mark
    it down and cut its clients), then gets it back: apps write again with no rerun."""
    app = apps[0]
    assert app.resp(6380, [["SELECT", "2"], ["SET", "apps:partition", "before"]], passwords["queue"]) == ["OK", "OK", "OK"]
    subprocess.run(["docker", "network", "disconnect", NETWORK, app.name], check=True, capture_output=True, timeout=60)
    try:
        time.sleep(4)   # two failed checks, a second apart, and a connect timeout of 1 s
        cut = app.resp(6380, [["SELECT", "2"], ["SET", "apps:partition", "during"]], passwords["queue"], check=False)
        assert cut is None, "a write through the endpoint was answered during the partition: %s" % cut
    finally:
        subprocess.run(["docker", "network", "connect", "--ip", app.address, NETWORK, app.name], check=True,
                       capture_output=True, timeout=60)
    # Each listener's check marks its server up again by itself (CI saw the queue's back before
    # the cache's): both within the bound.
    back = time.monotonic()
    while (app.resp(6380, [["SELECT", "2"], ["SET", "apps:partition", "after"]], passwords["queue"], check=False) != ["OK", "OK", "OK"]
           or app.resp(6379, [["PING"]], passwords["cache"], check=False) != ["OK", "PONG"]):
        assert time.monotonic() - back < 30, "the app host's endpoint did not recover within 30 s of the partition's end"
        time.sleep(0.5)
    assert app.resp(6379, [["PING"]], passwords["cache"]) == ["OK", "PONG"]
    assert apps[1].resp(6380, [["SELECT", "2"], ["GET", "apps:partition"]], passwords["queue"]) == ["OK", "OK", "after"]


def inventory_without(name):
    """Molecule's inventory with host `name` taken out of every group."""
    with open(INVENTORY) as handle:
        inventory = yaml.safe_load(handle)

    def strip(group):
        if isinstance(group, dict):
            group.get("hosts", {}).pop(name, None) if isinstance(group.get("hosts"), dict) else None
            for child in (group.get("children") or {}).values():
                strip(child)
    for group in inventory.values():
        strip(group)
    return inventory


def write_inventory(inventory, tmp_path):
    """The inventory beside a copy of molecule's group_vars and host_vars (the credentials folder)."""
    folder = tmp_path / "inventory"
    shutil.copytree(pathlib.Path(INVENTORY).parent, folder)
    path = folder / pathlib.Path(INVENTORY).name
    path.write_text(yaml.safe_dump(inventory))
    return path


def test_an_app_host_taken_out_of_the_inventory_is_refused_after_the_next_run(apps, redis_vps, passwords, tmp_path):
    gone = apps[1]
    assert gone.resp(6379, [["PING"]], passwords["cache"]) == ["OK", "PONG"]
    path = write_inventory(inventory_without(gone.name), tmp_path)
    cmd = ["ansible-playbook", "-i", str(path), str(REPO / "site.yml"), "--limit", redis_vps.name]
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1")
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:]
        rules = redis_vps.host.run("nft list ruleset").stdout
        assert gone.address not in rules and apps[0].address in rules
        # Its endpoint finds no server any more: the connection is dropped, no reply.
        assert gone.resp(6379, [["PING"]], passwords["cache"], check=False) is None
        assert apps[0].resp(6379, [["PING"]], passwords["cache"]) == ["OK", "PONG"]
    finally:
        rc, out = playbook("--limit", redis_vps.name)
        assert rc == 0, out[-3000:]
    deadline = time.monotonic() + 30
    while gone.resp(6379, [["PING"]], passwords["cache"], check=False) != ["OK", "PONG"]:
        assert time.monotonic() < deadline, "the app host did not get back in after the rerun with it"
        time.sleep(1)


@pytest.mark.parametrize("extra, words", [
    ({"redis_client_of": "nowhere"}, "redis_client_of of"),
    ({"redis_private_address": "10.0.0.1 10.0.0.2"}, "redis_private_address (or its older name redis_ha_address) must be one IP address"),
])
def test_bad_input_is_refused_before_any_change(extra, words, tmp_path):
    rc, out = playbook(extra_vars=extra, tmp_path=tmp_path)
    assert rc != 0 and words in out, out[-2000:]
    assert changed_count(out) == 0, out[-2000:]


def refused_with(inventory, tmp_path, words):
    path = write_inventory(inventory, tmp_path)
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(["ansible-playbook", "-i", str(path), str(REPO / "site.yml")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0 and words in out, out[-2000:]
    assert changed_count(out) == 0, out[-2000:]


def test_an_app_host_in_redis_ha_is_refused(apps, tmp_path):
    inventory = inventory_without("")
    inventory["all"].setdefault("children", {})["redis_ha"] = {"hosts": {apps[0].name: {}}}
    refused_with(inventory, tmp_path, "and in redis_ha")


def test_an_app_host_with_no_redis_host_is_refused(redis_vps, tmp_path):
    refused_with(inventory_without(redis_vps.name), tmp_path, "no host in redis_servers to use")
