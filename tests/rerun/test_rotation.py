"""Planned rotation (issue 17), on every host of the scenario at once: the queue's,
the cache's, admin's and backup's passwords rotated in two phases under load (a writer
that keeps the old password in phase 1 and has the new one in phase 2, and PHP
session requests through PHP-FPM): no request fails, nothing restarts, a site.yml
rerun after each phase changes nothing, and the old passwords stop only in phase 2."""
import json
import re
import shlex
import time

import pytest
from helpers import INVENTORY, REPO, RedisCommandError, changed_count, credentials_of, playbook, put_file, put_program, session_command
from test_rerun import snapshot

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

ROTATE = REPO / "playbooks" / "rotate.yml"
NAMES = "queue,cache,admin,backup"
LOAD = "/usr/local/lib/rotation_load.py"
WORK = "/root/rotation-test"


def start_load(host, redis, passwords):
    """The load in the background on `host`, with these application passwords."""
    put_program(host, LOAD, REPO / "tests" / "rerun" / "rotation_load.py")
    put_file(host, WORK + "/passwords.json", json.dumps(passwords), mode="0600")
    host.run_test("rm -f %s/stop %s/result.json" % (WORK, WORK))
    php = session_command(host, "/var/www/rotation")
    sockets = json.dumps({name: redis.socket(name) for name in ("cache", "queue")})
    host.run_test("nohup python3 %s %s/passwords.json %s/stop %s/result.json %s %s > %s/load.log 2>&1 < /dev/null &" % (
        LOAD, WORK, WORK, WORK, shlex.quote(sockets), shlex.quote(php), WORK))


def stop_load(host):
    host.run_test("touch %s/stop" % WORK)
    deadline = time.monotonic() + 30
    while not host.file(WORK + "/result.json").exists:
        assert time.monotonic() < deadline, host.run("cat %s/load.log" % WORK).stdout
        time.sleep(0.5)
    return json.loads(host.file(WORK + "/result.json").content_string)


def state(host, redis, admin):
    """What must not move: the instances' run_ids and PHP-FPM's master process."""
    ids = tuple(next(line.split(":", 1)[1].strip() for line in redis.run(name, "INFO", "server", password=admin).splitlines()
                     if line.startswith("run_id:")) for name in ("cache", "queue"))
    return ids, host.run("pgrep -f '^php-fpm: master'").stdout.strip()


def works(redis, instance, user, password):
    try:
        return redis.run(instance, "PING", user=user, password=password) == "PONG"
    except RedisCommandError:
        return False


def under_load(every_host, passwords_of, *args):
    """Run rotate.yml with `args` while each host carries the load; the load's results."""
    for host, redis, hostvars in every_host:
        start_load(host, redis, passwords_of(redis))
    time.sleep(2)
    rc, out = playbook(*args, path=ROTATE)
    results = {host: stop_load(host) for host, _, _ in every_host}
    assert rc == 0, out
    for host, result in results.items():
        assert result["rounds"] > 5 and not result["errors"], (host.backend.get_hostname(), result)
    return out


def test_rotation_in_two_phases_under_load_loses_nothing_and_restarts_nothing(every_host, tmp_path):
    old = {host: dict(redis.credentials) for host, redis, _ in every_host}
    try:
        rotate_twice(every_host, old)
    finally:
        # The later tests log in with what the controller has now.
        for _, redis, hostvars in every_host:
            redis.credentials.update(credentials_of(hostvars))


def rotate_twice(every_host, old):
    before = {host: state(host, redis, redis.credentials["admin"]) for host, redis, _ in every_host}

    # Phase 1: the applications still have the old passwords.
    out = under_load(every_host, lambda redis: {n: redis.credentials[n] for n in ("cache", "queue")}, "-e", "redis_rotate=" + NAMES)
    for host, redis, hostvars in every_host:
        new = credentials_of(hostvars)
        for name in NAMES.split(","):
            assert new[name] != old[host][name], name
        assert state(host, redis, new["admin"]) == before[host], "an instance or PHP-FPM was restarted"
        for instance in ("cache", "queue"):
            for creds in (old[host], new):
                assert works(redis, instance, "default", creds[instance]) and works(redis, instance, "admin", creds["admin"])
        assert works(redis, "queue", "backup", new["backup"]) and works(redis, "queue", "backup", old[host]["backup"])
        assert host.run("cat /etc/redis-vps-backup/backup-password").stdout.strip() == new["backup"]
        assert host.run("cat /etc/redis-vps/credentials/queue").stdout.strip() == new["queue"]
        assert host.file("/etc/redis-vps/credentials/queue.retiring").mode == 0o600
        for value in list(new.values()) + list(old[host].values()):
            assert value not in out
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out

    # Phase 2: the applications have switched to the new passwords.
    fresh = {host: credentials_of(hostvars) for host, _, hostvars in every_host}
    under_load(every_host, lambda redis: {n: fresh[redis.host][n] for n in ("cache", "queue")},
               "-e", "redis_rotate=" + NAMES, "-e", "redis_rotate_retire=true")
    for host, redis, _ in every_host:
        new = fresh[host]
        assert state(host, redis, new["admin"]) == before[host], "an instance or PHP-FPM was restarted"
        for instance in ("cache", "queue"):
            assert works(redis, instance, "default", new[instance]) and works(redis, instance, "admin", new["admin"])
            assert not works(redis, instance, "default", old[host][instance])
            assert not works(redis, instance, "admin", old[host]["admin"])
        assert not works(redis, "queue", "backup", old[host]["backup"])
        assert not host.file("/etc/redis-vps/credentials/queue.retiring").exists
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out


@pytest.mark.parametrize("args, message", [
    (["-e", "redis_rotate=bogus"], r"redis_rotate: unknown password bogus on \S+; rotate.yml rotates cache, queue"),
    (["-e", "redis_rotate=queue", "-e", "redis_rotate_retire=true"], r"redis_rotate_retire: no rotation of queue is in progress"),
    (["-e", "redis_rotate="], r"redis_rotate must name the password to rotate"),
], ids=["unknown", "retire-without-rotation", "empty"])
def test_bad_rotation_input_is_refused_before_any_change(every_host, args, message):
    before = [snapshot(host, redis) for host, redis, _ in every_host]
    rc, out = playbook(*args, path=ROTATE)
    assert rc != 0 and re.search(message, out), out[-3000:]
    assert "Check the input before anything changes" in out.split("fatal:")[0].rsplit("PLAY [", 1)[-1]
    assert [snapshot(host, redis) for host, redis, _ in every_host] == before
