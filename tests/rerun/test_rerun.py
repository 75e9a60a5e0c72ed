"""Reruns of site.yml on a provisioned host: live changes, restarts, rollback, refusals.

These run ansible-playbook from the controller against molecule's inventory
(MOLECULE_INVENTORY_FILE), so they only run inside a molecule scenario.
"""
import os
import re
import shlex
import time

import pytest
from helpers import (INVENTORY, REPO, RedisCommandError, changed_count, engine_of,
                     php_request_command, playbook)

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

PHP_INI = "/etc/php/*/fpm/conf.d/90-redis-sessions.ini"


def run_id(redis, name):
    return redis.info(name, "server")["run_id"]


def snapshot(host, redis):
    """What must not move when a run is refused: file checksums and run_ids."""
    watched = [path for record in redis.instances.values() for path in (record["conf"], record["users_conf"])]
    sums = host.run("sha256sum %s %s" % (" ".join(watched), PHP_INI)).stdout
    return sums, run_id(redis, "cache"), run_id(redis, "queue")


# Each test reruns site.yml once for every host of the scenario (one release and
# engine each): the hosts converge side by side, and every assertion runs on each.


def test_policy_and_size_change_live_without_restart_or_lost_key(every_host):
    generator = "import sys\nfor i in range(10000): sys.stdout.write('SET live:%d %d\\n' % (i, i))"
    before = {}
    for host, redis, _ in every_host:
        host.run_test("python3 -c %s | %s > /dev/null" % (
            shlex.quote(generator), redis.cli("cache", "default", redis.credentials["cache"])))
        keys = int(redis.run("cache", "DBSIZE"))
        assert keys >= 10000
        before[host] = keys, (run_id(redis, "cache"), run_id(redis, "queue"))

    changes = ["-e", "redis_cache_maxmemory_policy=allkeys-lfu", "-e", "redis_cache_maxmemory=300mb",
               "-e", "redis_queue_maxmemory=100mb"]
    rc, out = playbook(*changes)
    assert rc == 0, out
    for host, redis, _ in every_host:
        keys, ids = before[host]
        assert redis.config("cache", "maxmemory-policy") == "allkeys-lfu"
        assert redis.config("cache", "maxmemory") == str(300 * 2 ** 20)
        assert redis.config("queue", "maxmemory") == str(100 * 2 ** 20)
        assert (run_id(redis, "cache"), run_id(redis, "queue")) == ids, "an instance was restarted"
        assert int(redis.run("cache", "DBSIZE")) == keys
        assert "allkeys-lfu" in host.file(redis.instances["cache"]["conf"]).content_string

    rc, out = playbook(*changes)
    assert rc == 0 and changed_count(out) == 0, out

    rc, out = playbook()   # back to the defaults, live again
    assert rc == 0, out
    for host, redis, _ in every_host:
        keys, ids = before[host]
        assert redis.config("cache", "maxmemory-policy") == "allkeys-lru"
        assert (run_id(redis, "cache"), run_id(redis, "queue")) == ids
        assert int(redis.run("cache", "DBSIZE")) == keys


def test_check_diff_shows_the_change_and_no_secret(every_host):
    before = [snapshot(host, redis) for host, redis, _ in every_host]
    rc, out = playbook("--check", "--diff", "-e", "redis_cache_maxmemory=200mb")
    assert rc == 0, out
    assert out.count("+maxmemory 200mb") >= len(every_host) and "-maxmemory 256mb" in out
    for _, redis, _ in every_host:
        for secret in redis.credentials.values():
            assert secret not in out
    assert [snapshot(host, redis) for host, redis, _ in every_host] == before


def test_restart_only_change_restarts_only_its_instance(every_host):
    ids = {}
    for host, redis, _ in every_host:
        redis.run("queue", "SET", "restart:queue-key", "kept", user="default")
        ids[host] = run_id(redis, "queue"), run_id(redis, "cache")
    rc, out = playbook("-e", "redis_cache_port=6390")
    assert rc == 0, out
    for host, redis, _ in every_host:
        assert host.socket("tcp://127.0.0.1:6390").is_listening
        assert not host.socket("tcp://127.0.0.1:6379").is_listening
        assert run_id(redis, "cache") != ids[host][1]
        assert run_id(redis, "queue") == ids[host][0]
    rc, out = playbook()
    assert rc == 0, out
    for host, redis, _ in every_host:
        assert host.socket("tcp://127.0.0.1:6379").is_listening
        assert redis.run("queue", "GET", "restart:queue-key", user="default") == "kept"


def copies_left(host, redis):
    """Backup copies (AnsibleModule's NAME.PID.DATE@TIME~) beside the instances' files."""
    folder = os.path.dirname(redis.instances["cache"]["conf"])
    return host.run("ls %s | grep '~$' || true" % folder).stdout.split()


def test_copies_an_interrupted_run_left_are_removed_by_the_next(every_host):
    """A run stopped between writing a file and removing its previous copy (killed, a lost
    connection) leaves the copy; the next run removes it, and only it."""
    for host, redis, _ in every_host:
        for kind in ("conf", "users_conf"):
            path = redis.instances["queue"][kind]
            host.run_test("cp -p %s %s.4242.2026-12-01@12:24:19~" % (path, path))
        host.run_test("touch %s.keep~" % redis.instances["queue"]["conf"])   # not a copy of ours: kept
    rc, out = playbook()
    assert rc == 0, out
    for host, redis, _ in every_host:
        assert copies_left(host, redis) == [os.path.basename(redis.instances["queue"]["conf"]) + ".keep~"]
        host.run_test("rm %s.keep~" % redis.instances["queue"]["conf"])


# A start-limit window (systemd's default: 5 starts in 10 s) longer than any run's rescue:
# the failed restarts then always hold the unit when the previous config is started again,
# as they do on a quick machine (CI saw it; a slow run's rescue came after the window).
LIMIT_DROP_IN = "/run/systemd/system/%s.d/zz-test-start-limit.conf"


def test_broken_restart_value_is_rolled_back_while_the_old_instance_serves(every_host):
    # Something else holds the port: Redis cannot bind it and fails to start.
    conf_before = {}
    for host, redis, _ in every_host:
        host.run_test("systemd-run --unit squatter python3 -m http.server --bind 127.0.0.1 6391")
        drop_in = LIMIT_DROP_IN % redis.instances["cache"]["service"]
        host.run_test("mkdir -p %s && printf '[Unit]\\nStartLimitIntervalSec=600\\n' > %s && systemctl daemon-reload"
                      % (os.path.dirname(drop_in), drop_in))
    try:
        for host, redis, _ in every_host:
            wait_listening(host, 6391)
            conf_before[host] = host.file(redis.instances["cache"]["conf"]).sha256sum
        rc, out = playbook("-e", "redis_cache_port=6391")
        assert rc != 0
        assert out.count("previous files are back in place") >= len(every_host), out
        for host, redis, _ in every_host:
            conf = redis.instances["cache"]["conf"]
            assert host.file(conf).sha256sum == conf_before[host]
            assert copies_left(host, redis) == [], "backup files left behind"
            assert redis.run("cache", "PING", user="default") == "PONG"
            assert host.socket("tcp://127.0.0.1:6379").is_listening
    finally:
        for host, redis, _ in every_host:
            host.run("systemctl stop squatter")
            host.run("rm -f %s && systemctl daemon-reload" % (LIMIT_DROP_IN % redis.instances["cache"]["service"]))
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out


def test_a_live_step_that_fails_stops_the_run_and_puts_the_previous_files_back(every_host):
    """The cache's socket gone (a plain file in its place: someone's cleanup of /run): the new
    policy is written but cannot be applied live. The run must fail saying so, with the previous
    files back, the queue untouched; it passed before, the change applied nowhere."""
    before = {}
    for host, redis, _ in every_host:
        sock = redis.instances["cache"]["config"]["unixsocket"]
        before[host] = host.file(redis.instances["cache"]["conf"]).sha256sum, run_id(redis, "queue")
        host.run_test("mv %s %s.test && touch %s" % (sock, sock, sock))
    try:
        rc, out = playbook("-e", "redis_cache_maxmemory_policy=allkeys-lfu")
        assert rc != 0, out
        assert out.count("previous files are back in place") >= len(every_host), out
        for host, redis, _ in every_host:
            assert "cannot connect to %s" % redis.instances["cache"]["config"]["unixsocket"] in out, out
            assert host.file(redis.instances["cache"]["conf"]).sha256sum == before[host][0]
            assert copies_left(host, redis) == [], "backup files left behind"
    finally:
        for host, redis, _ in every_host:
            sock = redis.instances["cache"]["config"]["unixsocket"]
            host.run("rm -f %s && mv %s.test %s" % (sock, sock, sock))
    for host, redis, _ in every_host:
        assert redis.config("cache", "maxmemory-policy") == "allkeys-lru"
        assert run_id(redis, "queue") == before[host][1]
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out


PUNCTUATION_PASSWORD = "Letters " + "".join(chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum()) + " End"


def test_a_stopped_or_disabled_instance_or_a_removed_package_is_brought_back_and_nothing_else_moves(every_host):
    before = {}
    for host, redis, _ in every_host:
        redis.run("queue", "SET", "drift:queue-key", "kept", user="default")
        units = [redis.instances[name]["service"] for name in ("cache", "queue")]
        before[host] = run_id(redis, "queue"), units
        host.run_test("systemctl stop %s && systemctl disable %s" % tuple(units))
        # Removed with its config files kept: dpkg keeps its file list, which no longer tells it is installed.
        host.run_test("DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq unattended-upgrades")
        assert host.package("unattended-upgrades").is_installed is False
    rc, out = playbook()
    assert rc == 0, out
    # per host: the units task (one start, one enable), apt's install and its result read
    assert changed_count(out) == 3 * len(every_host), out
    for host, redis, _ in every_host:
        assert host.package("unattended-upgrades").is_installed
        queue_id, units = before[host]
        for unit in units:
            assert host.service(unit).is_running and host.service(unit).is_enabled
        assert run_id(redis, "queue") == queue_id, "enabling the queue must not restart it"
        assert redis.run("queue", "GET", "drift:queue-key", user="default") == "kept"


def test_password_with_every_punctuation_character_works_end_to_end(every_host, tmp_path):
    ids = {host: run_id(redis, "queue") for host, redis, _ in every_host}
    rc, out = playbook(extra_vars={"redis_queue_password": PUNCTUATION_PASSWORD}, tmp_path=tmp_path)
    assert rc == 0, out
    assert PUNCTUATION_PASSWORD not in out
    for host, redis, _ in every_host:
        assert run_id(redis, "queue") == ids[host], "a password change must not restart the queue"
        assert redis.run("queue", "PING", user="default", password=PUNCTUATION_PASSWORD) == "PONG"
        with pytest.raises(RedisCommandError):
            redis.run("queue", "PING", user="default")   # the old password is gone
        command = php_request_command(host, "/var/www/rerun/s.php",
                                      "<?php session_start(); $_SESSION['n'] = 1; echo session_id();")
        answer = host.run(command)
        sid = answer.stdout.strip().splitlines()[-1]
        assert "Set-Cookie: PHPSESSID=" in answer.stdout, answer.stdout
        assert redis.run("queue", "-n", "1", "EXISTS", "PHPREDIS_SESSION:" + sid) == "1"
    rc, out = playbook()   # back to the generated password
    assert rc == 0, out


def test_metrics_open_to_one_monitoring_address_and_close_again(every_host):
    ids = {host: (run_id(redis, "cache"), run_id(redis, "queue")) for host, redis, _ in every_host}
    rc, out = playbook("-e", "redis_exporter_allow_from=192.0.2.10")
    assert rc == 0, out
    for host, redis, _ in every_host:
        ruleset = host.run("nft list chain inet filter input").stdout
        listening = host.run("ss -Hltn").stdout
        for name in ("cache", "queue"):
            port = redis.instances[name]["exporter"]["port"]
            assert "ip saddr 192.0.2.10 tcp dport %d ct state new accept" % port in ruleset, ruleset
            assert re.search(r"(\*|0\.0\.0\.0|\[::\]):%d\s" % port, listening), listening
        assert (run_id(redis, "cache"), run_id(redis, "queue")) == ids[host], "the instances must not restart"
    rc, out = playbook()
    assert rc == 0, out
    for host, redis, _ in every_host:
        assert "192.0.2.10" not in host.run("nft list ruleset").stdout
        listening = host.run("ss -Hltn").stdout
        for name in ("cache", "queue"):
            port = redis.instances[name]["exporter"]["port"]
            assert re.search(r"127\.0\.0\.1:%d\s" % port, listening)
            assert not re.search(r"(\*|0\.0\.0\.0|\[::\]):%d\s" % port, listening)
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out


BACKGROUND_INSTALL = """
- hosts: all
  gather_facts: false
  roles:
    - role: vps_packages
      vps_packages_install: [redis-vps-no-such-package]
      vps_packages_background: true
  tasks:
    - name: Wait
      ansible.builtin.include_role: {name: vps_packages, tasks_from: wait}
    - name: After the wait
      ansible.builtin.debug: {msg: went on}
"""


def test_a_failed_background_install_fails_the_run_at_the_wait(tmp_path):
    """site.yml starts apt and goes on: apt's failure must still stop the run, at the wait."""
    play = tmp_path / "background.yml"
    play.write_text(BACKGROUND_INSTALL)
    # (a playbook outside the checkout: the role's masks use the collection's host_files)
    rc, out = playbook(path=play, env={"ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections")})
    assert rc != 0, out
    assert "No package matching 'redis-vps-no-such-package'" in out, out[-3000:]
    assert out.split("fatal:")[0].rsplit("TASK [", 1)[-1].startswith("vps_packages : Read apt's result"), out[-3000:]
    assert "went on" not in out


BAD_INPUT = [
    ({"redis_cache_maxmemory_policy": "most-recent"}, r"redis_cache_maxmemory_policy must be one of"),
    ({"redis_queue_maxmemory_policy": ""}, r"redis_queue_maxmemory_policy must be one of"),
    ({"redis_cache_maxmemory": "lots"}, r"redis_cache_maxmemory must be a size"),
    ({"redis_queue_maxmemory": "-1mb"}, r"redis_queue_maxmemory must be a size"),
    ({"redis_queue_maxmemory": "64gb"}, r"must fit in 75% of redis_host_memory_mb"),
    ({"redis_cache_port": 70000}, r"redis_cache_port \(70000\) and redis_queue_port \(6380\) must be two different ports"),
    ({"redis_cache_port": 80}, r"must be two different ports from 1024 to 65535"),
    ({"redis_queue_port": 6379}, r"redis_queue_port \(6379\) must be two different ports"),
    ({"redis_cache_password": "short"}, r"redis_cache_password: a password must be at least 16"),
    ({"redis_admin_password": "YourVeryStrongRedisPassword!"}, r"redis_admin_password: a password .*placeholder"),
    ({"redis_queue_password": "sixteen chars and a\nnewline"}, r"redis_queue_password: a password must be"),
    ({"redis_host_memory_mb": "lots"}, r"redis_host_memory_mb.*(int|convert)"),
    ({"redis_engine": "keydb"}, r"redis_engine must be one of: redis, valkey"),
    ({"redis_exporter_allow_from": "0.0.0.0/0"}, r"redis_exporter_allow_from must be the one monitoring address"),
    ({"redis_exporter_allow_from": "192.0.2.10", "vps_hardening_firewall": False},
     r"redis_exporter_allow_from opens the metrics through the firewall .* would be open to everyone"),
    ({"redis_exporter_ports": {"cache": 9121, "queue": 9121}}, r"redis_exporter_ports must give cache and queue two"),
    ({"redis_monitor_password": "short"}, r"redis_monitor_password: a password must be at least 16"),
    ({"redis_host_memory_mb": 256}, r"redis_host_memory_mb must be the host's RAM in MB, at least 512"),
    ({"php_session_redis_database": 16}, r"php_session_redis_database must be 0-15"),
    ({"vps_hardening_ssh_port": 70000}, r"vps_hardening_ssh_port must be a port from 1 to 65535"),
    ({"vps_hardening_firewall_allowed_ports": [{"port": 0}]}, r"vps_hardening_firewall_allowed_ports: each item needs a port"),
    ({"vps_hardening_firewall_allowed_ports": [{"port": 443, "proto": "sctp"}]}, r"and a proto tcp or udp"),
    ({"vps_hardening_ssh_allow_users": ["deploy"]}, r"vps_hardening_ssh_allow_users \(deploy\) does not include root"),
    ({"ansible_password": "a-password-login"}, r"Ansible logs in to \S+ with a password"),
]


@pytest.mark.parametrize("bad, message", BAD_INPUT, ids=[next(iter(b)) + "=" + str(next(iter(b.values()))) for b, _ in BAD_INPUT])
def test_bad_input_is_refused_before_any_change(every_host, tmp_path, bad, message):
    """One run over every host: refused in the validation play, nothing changed anywhere."""
    refused(every_host, tmp_path, bad, {hostvars["inventory_hostname"]: [message] for _, _, hostvars in every_host})


def refused(every_host, tmp_path, extra_vars, messages):
    """Run site.yml on every host with `extra_vars`: it must fail in the validation play,
    print each host's expected `messages` (name -> regexes), and change nothing."""
    before = [snapshot(host, redis) for host, redis, _ in every_host]
    rc, out = playbook(extra_vars=extra_vars, tmp_path=tmp_path)
    assert rc != 0
    assert "Check the input before anything changes" in out.split("fatal:")[0].rsplit("PLAY [", 1)[-1]
    for name, patterns in messages.items():
        said = " ".join(re.findall(r"(?:failed|fatal): \[%s\](.*?)(?=(?:ok|changed|failed|fatal|skipping): \[|TASK \[|PLAY |$)"
                                   % re.escape(name), out))
        assert said, "%s was not refused: %s" % (name, out[-3000:])
        for pattern in patterns:
            assert re.search(pattern, said), (name, pattern, said[-3000:])
    assert [snapshot(host, redis) for host, redis, _ in every_host] == before


@pytest.mark.parametrize("wanted", ["redis", "valkey"])
def test_an_engine_switch_or_valkey_on_debian_12_is_refused_before_any_change(every_host, tmp_path, wanted):
    """Another engine's instances on the host, or Valkey on Debian 12: the run stops first,
    saying why, and no package of the other engine is installed."""
    messages = {}
    for host, _, hostvars in every_host:
        patterns = []
        if engine_of(hostvars)["engine"] != wanted:
            patterns.append(r"redis_engine is '%s', but \S+ already has %s instances .*data formats differ"
                            % (wanted, engine_of(hostvars)["engine"]))
        if wanted == "valkey" and host.system_info.codename == "bookworm":
            patterns.append(r"redis_engine: valkey needs Debian 13 or later")
        if patterns:
            messages[hostvars["inventory_hostname"]] = patterns
    assert messages, "no host to refuse"
    refused(every_host, tmp_path, {"redis_engine": wanted}, messages)
    for host, _, hostvars in every_host:
        if engine_of(hostvars)["engine"] != wanted:
            assert not host.package("%s-server" % wanted).is_installed


def wait_listening(host, port, timeout=10):
    deadline = time.monotonic() + timeout
    while not host.socket("tcp://127.0.0.1:%d" % port).is_listening:
        assert time.monotonic() < deadline, "nothing listens on %d" % port
        time.sleep(0.2)
