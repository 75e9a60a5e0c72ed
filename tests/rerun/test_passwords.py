"""Passwords (issue 17): a second controller changes nothing, recovery reads them back,
a new admin or monitor password applies live, bad passwords are refused.

These run ansible-playbook from the controller against molecule's inventory, on every
host of the scenario (Debian 12 + Redis, 13 + Redis, 13 + Valkey) at once.
"""
import os
import shlex

import pytest
from helpers import INVENTORY, REPO, RedisCommandError, changed_count, credentials_of, playbook
from test_rerun import copies_left, refused, run_id, snapshot

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

STORE = "/etc/redis-vps/credentials"
BACKUP_PASSWORD = "/etc/redis-vps-backup/backup-password"


def host_state(host, redis):
    """What a refused or read-only run must leave as it is: the files, the run_ids, the
    store and the backup role's password (by checksum)."""
    return snapshot(host, redis), host.run("sha256sum %s/* %s 2>/dev/null" % (STORE, BACKUP_PASSWORD)).stdout


def run_id_as(redis, instance, password):
    info = redis.run(instance, "INFO", "server", password=password)
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("run_id:"))


def old_passwords_work(redis):
    for instance in ("cache", "queue"):
        assert redis.run(instance, "PING", user="default") == "PONG"
        assert redis.run(instance, "PING") == "PONG"


def test_a_controller_without_the_secrets_changes_nothing_and_says_what_is_missing(every_host, tmp_path):
    empty = tmp_path / "teammate-secrets"
    before = [host_state(host, redis) for host, redis, _ in every_host]
    refused(every_host, tmp_path, {"redis_credentials_dir": str(empty)},
            {hostvars["inventory_hostname"]: [
                r"redis_credentials_dir: \S+ already runs this project's instances",
                r"no cache, queue, admin, monitor, backup, session password",
                r"teammate-secrets/%s/redis_cache_password" % hostvars["inventory_hostname"],
                r"playbooks/recover-credentials.yml", r"playbooks/rotate.yml"] for _, _, hostvars in every_host})
    assert [host_state(host, redis) for host, redis, _ in every_host] == before
    assert not empty.exists() or not any(empty.rglob("*_password")), "a password was generated"
    for _, redis, _ in every_host:
        old_passwords_work(redis)


def test_the_host_keeps_every_password_root_only(every_host):
    for host, redis, _ in every_host:
        folder = host.file(STORE)
        assert (folder.user, folder.group, folder.mode) == ("root", "root", 0o700)
        for name, value in redis.credentials.items():
            f = host.file("%s/%s" % (STORE, name))
            assert (f.user, f.mode) == ("root", 0o600)
            assert host.run("cat %s/%s" % (STORE, name)).stdout.strip() == value


def test_recovery_writes_the_controllers_files_and_changes_nothing_on_the_host(every_host, tmp_path):
    new = tmp_path / "recovered"
    before = [host_state(host, redis) for host, redis, _ in every_host]
    rc, out = playbook(path=REPO / "playbooks" / "recover-credentials.yml",
                       extra_vars={"redis_credentials_dir": str(new)}, tmp_path=tmp_path)
    assert rc == 0, out
    assert [host_state(host, redis) for host, redis, _ in every_host] == before
    for host, redis, hostvars in every_host:
        got = credentials_of(dict(hostvars, redis_credentials_dir=str(new)))
        assert got == redis.credentials
        for path in (new / hostvars["inventory_hostname"]).iterdir():
            assert oct(path.stat().st_mode & 0o777) == "0o600", path
        assert oct((new / hostvars["inventory_hostname"]).stat().st_mode & 0o777) == "0o700"
        for value in redis.credentials.values():
            assert value not in out
    # The recovered folder is as good as the original: a rerun from it changes nothing.
    rc, out = playbook(extra_vars={"redis_credentials_dir": str(new)}, tmp_path=tmp_path)
    assert rc == 0 and changed_count(out) == 0, out


def test_a_host_from_before_the_store_gives_back_what_it_holds_in_clear(every_host, tmp_path):
    """No /etc/redis-vps/credentials (provisioned by an older release): the session user's password
    comes from PHP's ini (an older release's ini held the queue's), monitor's from the exporter's env or
    password file, backup's from its file; cache, queue and admin exist only as hashes there and are
    said to be lost."""
    for host, _, _ in every_host:
        host.run_test("mv %s /root/store.aside" % STORE)
    try:
        new = tmp_path / "recovered"
        rc, out = playbook(path=REPO / "playbooks" / "recover-credentials.yml",
                           extra_vars={"redis_credentials_dir": str(new)}, tmp_path=tmp_path)
        assert rc == 0, out
        assert "Not recovered: cache, queue, admin" in out, out
        for host, redis, hostvars in every_host:
            folder = new / hostvars["inventory_hostname"]
            for name in ("monitor", "backup"):
                assert (folder / ("redis_%s_password" % name)).read_text() == redis.credentials[name]
            assert (folder / "session_password").read_text() == redis.credentials["session"]
            for name in ("cache", "queue", "admin"):
                assert not (folder / ("redis_%s_password" % name)).exists()
    finally:
        for host, _, _ in every_host:
            host.run_test("rm -rf %s && mv /root/store.aside %s" % (STORE, STORE))


def test_new_admin_and_monitor_passwords_from_the_inventory_apply_live(every_host, tmp_path):
    new = {"redis_admin_password": "new-admin-password-0123456789", "redis_monitor_password": "new-monitor-password-0123456789"}
    ids = {host: (run_id(redis, "cache"), run_id(redis, "queue")) for host, redis, _ in every_host}
    rc, out = playbook(extra_vars=new, tmp_path=tmp_path)
    assert rc == 0, out
    try:
        for host, redis, _ in every_host:
            admin = new["redis_admin_password"]
            assert (run_id_as(redis, "cache", admin), run_id_as(redis, "queue", admin)) == ids[host], "an instance was restarted"
            for instance in ("cache", "queue"):
                assert redis.run(instance, "PING", password=new["redis_admin_password"]) == "PONG"
                assert redis.run(instance, "PING", user="monitor", password=new["redis_monitor_password"]) == "PONG"
                with pytest.raises(RedisCommandError):
                    redis.run(instance, "PING", password=redis.credentials["admin"])
            assert exporter_up(host), "the exporter does not log in with the new monitor password"
            # The users files' previous copies go once the new ones are loaded (a masked path kept them).
            assert copies_left(host, redis) == []
        rc, out = playbook(extra_vars=new, tmp_path=tmp_path)
        assert rc == 0 and changed_count(out) == 0, out
    finally:
        rc, out = playbook()   # back to the generated ones, live again
        assert rc == 0, out
    for host, redis, _ in every_host:
        assert (run_id(redis, "cache"), run_id(redis, "queue")) == ids[host]
        old_passwords_work(redis)


def exporter_up(host, port=9122, timeout=20):
    """Whether the queue's exporter reports redis_up 1 (it restarts with a new password)."""
    script = ("import time, urllib.request\n"
              "for _ in range(%d):\n"
              "    try:\n"
              "        if 'redis_up 1' in urllib.request.urlopen('http://127.0.0.1:%d/metrics').read().decode(): print('up'); break\n"
              "    except OSError: pass\n"
              "    time.sleep(1)\n" % (timeout, port))
    return host.run("python3 -c %s" % shlex.quote(script)).stdout.strip() == "up"


BAD = [
    ({"redis_queue_password": " leading-space-0123456789"}, r"redis_queue_password: a password must be"),
    ({"redis_admin_password": "trailing-space-0123456789 "}, r"redis_admin_password: a password must be"),
    ({"redis_cache_password": "new\nline-0123456789abcdef"}, r"redis_cache_password: a password must be"),
    ({"redis_backup_password": "tab\tinside-0123456789abc"}, r"redis_backup_password: a password must be"),
    ({"redis_backup_offsite_repository": "rest:https://user:s3cret@backup.example.invalid/repo"},
     r"redis_backup_offsite_repository must not hold credentials"),
]


@pytest.mark.parametrize("bad, message", BAD, ids=[next(iter(b)) for b, _ in BAD])
def test_bad_passwords_and_credentials_in_an_address_are_refused(every_host, tmp_path, bad, message):
    refused(every_host, tmp_path, bad, {hostvars["inventory_hostname"]: [message] for _, _, hostvars in every_host})
