"""Backups under faults (issue 20) on provisioned hosts (molecule/backup), every platform at once
through playbooks/backup.yml: a real AOF rewrite (slowed with rdb-key-save-delay) running when
the backup asks for its snapshot; a small filesystem on /var/backups; a backup that would leave
the AOF's filesystem short of room. Each refusal leaves no file behind, and the health report
says why.
"""
import json
import re
import shlex
import time

import pytest
from helpers import REPO, fill, playbook
from test_backup import BACKUP, every_vps, ok, pytestmark  # noqa: F401  (a fixture; skipped without a scenario)

STATUS = REPO / "playbooks" / "status.yml"
REWRITE_SECONDS = 25        # the slowed rewrite outlasts the playbook's way to its backup task


def journal_since(vps, since):
    return vps.host.run("journalctl -q -o cat --since @%d -u %s" % (since, vps.queue["backup"]["service"])).stdout


def lastsave(vps):
    return int(vps.redis.run("queue", "LASTSAVE").split()[-1])


def wait_until(check, seconds, what):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture
def timers_stopped(every_vps):
    """No scheduled backup in the middle; the timers started again after."""
    for vps in every_vps:
        vps.host.run_test("systemctl stop %s %s" % (vps.queue["backup"]["timer"], vps.queue["backup"]["service"]))
    yield
    for vps in every_vps:
        vps.host.run_test("systemctl start %s" % vps.queue["backup"]["timer"])


@pytest.mark.usefixtures("timers_stopped")
def test_a_backup_during_a_real_aof_rewrite_is_scheduled_and_waited_for(every_vps, tmp_path):
    started = int(time.time())
    for vps in every_vps:
        if int(vps.redis.run("queue", "DBSIZE")) < 20000:
            assert "errors: 0" in fill(vps.host, vps.redis, "queue", "rw", count=20000, size=100)
        keys = int(vps.redis.run("queue", "DBSIZE"))
        # The rewrite's child keeps the delay it forked with; the backup's BGSAVE, forked later, runs at full speed.
        vps.redis.run("queue", "CONFIG", "SET", "rdb-key-save-delay", max(1, REWRITE_SECONDS * 10 ** 6 // keys))
        try:
            vps.redis.run("queue", "BGREWRITEAOF")
            wait_until(lambda: vps.redis.info("queue", "persistence")["aof_rewrite_in_progress"] == "1", 10,
                       "no AOF rewrite started on %s" % vps.name)
        finally:
            vps.redis.run("queue", "CONFIG", "SET", "rdb-key-save-delay", 0)
    out = ok(*playbook(path=BACKUP, tmp_path=tmp_path))
    for vps in every_vps:
        said = journal_since(vps, started)
        assert "Background saving scheduled" in said, (vps.name, said[-2000:])
        persistence = vps.redis.info("queue", "persistence")
        assert persistence["aof_rewrite_in_progress"] == "0" and persistence["aof_last_bgrewrite_status"] == "ok"
        status = json.loads(vps.host.file(vps.queue["backup"]["status_file"]).content_string)
        assert status["last_error"] is None and status["last_success"] >= started, status
        # The snapshot was written after the rewrite: it is newer than the rewrite's start.
        assert re.search(r"queue: \d+ local snapshots", out)


def fill_random(vps, prefix, count, size):
    """`count` values of `size` random bytes (hex, which no compression shrinks much), pipelined."""
    generator = ("import os, sys\n"
                 "for i in range(%d):\n"
                 "    k, v = '%s:%%d' %% i, os.urandom(%d).hex()\n"
                 "    sys.stdout.write('*3\\r\\n$3\\r\\nSET\\r\\n$%%d\\r\\n%%s\\r\\n$%%d\\r\\n%%s\\r\\n' %% (len(k), k, len(v), v))\n"
                 % (count, prefix, size // 2))
    out = vps.host.run("python3 -c %s | %s --pipe" % (
        shlex.quote(generator), vps.redis.cli("queue", "default", vps.redis.credentials["queue"])))
    assert "errors: 0" in out.stdout, out.stdout + out.stderr


def backup_files(vps):
    return sorted(vps.host.run("ls -A %s" % vps.queue["backup"]["dir"]).stdout.split())


def health_of(tmp_path, every_vps):
    report = tmp_path / "status.json"
    out = ok(*playbook("-e", "redis_status_json=%s" % report, path=STATUS))
    health = json.loads(report.read_text())
    return out, {vps.name: {h["name"]: h for h in health[vps.name]}["queue"] for vps in every_vps}


@pytest.fixture
def small_backup_filesystem(every_vps):
    """A 2 MB tmpfs on /var/backups with the backup folder as the role makes it; 8 MB of
    incompressible data in the queue, snapshotted, so the next snapshot is known not to fit."""
    for vps in every_vps:
        folder = vps.queue["backup"]["dir"]
        owner = vps.host.run("stat -c %%U:%%G %s" % folder).stdout.strip()
        fill_random(vps, "big", count=800, size=10000)
        before = lastsave(vps)
        vps.redis.run("queue", "BGSAVE")
        wait_until(lambda: lastsave(vps) > before, 30, "no snapshot on %s" % vps.name)
        vps.host.run_test("mount -t tmpfs -o size=2m,mode=0755 redis-vps-test /var/backups && mkdir -p %s && "
                          "chown %s %s && chmod 0700 %s" % (folder, owner, folder, folder))
    yield
    for vps in every_vps:
        vps.host.run("umount /var/backups")
        vps.redis.run("queue", "EVAL", "for _, k in ipairs(redis.call('KEYS', 'big:*')) do redis.call('DEL', k) end", 0)


@pytest.mark.usefixtures("timers_stopped", "small_backup_filesystem")
def test_a_snapshot_that_does_not_fit_is_refused_before_it_is_written_and_reported(every_vps, tmp_path):
    saved = {vps.name: lastsave(vps) for vps in every_vps}
    time.sleep(1)
    rc, out = playbook(path=BACKUP, tmp_path=tmp_path)
    assert rc != 0 and "failed: see journalctl -u redis-vps-backup@queue.service" in out, out[-3000:]
    for vps in every_vps:
        assert lastsave(vps) == saved[vps.name], "a snapshot was taken all the same on %s" % vps.name
        assert backup_files(vps) == [".lock", "status.json"], (vps.name, backup_files(vps))
    out, health = health_of(tmp_path, every_vps)
    for vps in every_vps:
        backup = health[vps.name]["backup"]
        assert backup["failed"] and "the backups' filesystem has" in backup["no_room"], backup
        assert "queue: backups are refused for lack of room: no room: the backups' filesystem has" in out


@pytest.fixture
def aof_reserve_beyond_the_disk(every_vps):
    """redis_backup_min_free_mb as large as the data's filesystem (in the settings file the role
    writes; put back after)."""
    for vps in every_vps:
        path = vps.queue["backup"]["config_file"]
        vps.host.run_test("cp -p %s %s.test-saved" % (path, path))
        free = int(vps.host.run("df -B1 --output=avail %s | tail -1" % vps.queue["config"]["dir"]).stdout)
        vps.host.run_test("python3 -c %s %s %d" % (shlex.quote(
            "import json, sys; p = sys.argv[1]; c = json.load(open(p)); c['min_free_bytes'] = int(sys.argv[2]); "
            "json.dump(c, open(p, 'w'))"), path, free))
    yield
    for vps in every_vps:
        path = vps.queue["backup"]["config_file"]
        vps.host.run_test("mv %s.test-saved %s" % (path, path))


@pytest.mark.usefixtures("timers_stopped", "aof_reserve_beyond_the_disk")
def test_a_backup_that_would_leave_the_aof_short_of_room_is_refused_and_the_next_good_one_clears_it(every_vps,
                                                                                                      tmp_path):
    saved = {vps.name: (lastsave(vps), backup_files(vps)) for vps in every_vps}
    time.sleep(1)
    rc, out = playbook(path=BACKUP, tmp_path=tmp_path)
    assert rc != 0
    for vps in every_vps:
        assert (lastsave(vps), backup_files(vps)) == saved[vps.name]
        status = json.loads(vps.host.file(vps.queue["backup"]["status_file"]).content_string)
        assert "filesystem of the instance's data (its AOF)" in status["no_room"], status


@pytest.mark.usefixtures("timers_stopped")
def test_after_room_is_made_the_next_backup_succeeds_and_the_report_is_clear(every_vps, tmp_path):
    ok(*playbook(path=BACKUP, tmp_path=tmp_path))
    out, health = health_of(tmp_path, every_vps)
    for vps in every_vps:
        backup = health[vps.name]["backup"]
        assert not backup["failed"] and backup["no_room"] is None, backup
    assert "refused for lack of room" not in out
