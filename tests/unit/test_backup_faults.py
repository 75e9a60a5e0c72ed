"""The backup program under faults (issue 20): an AOF rewrite in progress, too little room,
a disk that fills during the copy, files left by a killed run, a refused restore's staging
file. Against the fake server of test_redis_vps_backup.py; the same faults on real hosts are
in tests/backup/test_backup_faults.py."""
import errno
import json
import os

import pytest
import redis_vps_backup as prog
from test_redis_vps_backup import FakeServer, setup, snapshot_file  # noqa: F401  (setup: a fixture)

MB = 1 << 20


# --- The room rule (pure) -----------------------------------------------------------------------

@pytest.mark.parametrize("estimate, data_free, dest_free, same_fs, written, problem", [
    # Backups on their own filesystem: the data keeps a second RDB while it is written, plus one
    # AOF rewrite and the margin (100 MB); the backups' filesystem takes the copy.
    (10 * MB, 200 * MB, 50 * MB, False, False, None),
    (10 * MB, 119 * MB, 50 * MB, False, False, "filesystem of the instance's data"),
    (10 * MB, 200 * MB, 10 * MB, False, False, "the backups' filesystem has 10.0 MB free"),
    (10 * MB, 110 * MB, 50 * MB, False, True, None),       # the RDB is written: no second copy
    # Shared with the AOF: the copy counts there too.
    (10 * MB, 130 * MB, 130 * MB, True, False, None),
    (10 * MB, 129 * MB, 129 * MB, True, False, "move the backups to another filesystem"),
])
def test_a_backup_never_leaves_the_aofs_filesystem_short(estimate, data_free, dest_free, same_fs, written, problem):
    said = prog.room_problem(estimate, data_free, dest_free, same_fs, 100 * MB, written)
    assert (said is None) if problem is None else (problem in said), said


# --- Against the fake server ----------------------------------------------------------------

def status_of(tmp):
    return json.loads((tmp / "dest" / "status.json").read_text())


def test_a_backup_that_would_leave_the_aof_short_is_refused_before_any_snapshot(setup, capsys):
    tmp, config = setup
    # far more than there is, however much another process frees meanwhile
    config["min_free_bytes"] = prog.free_bytes(config["data_dir"]) + 10 ** 15
    (tmp / "etc" / "queue.json").write_text(json.dumps(config))
    server = FakeServer(config["socket"], config["data_dir"])
    try:
        assert prog.main(["backup", "queue"]) == 2
    finally:
        server.close()
    assert not [c for c in server.commands if c[0] == "BGSAVE"], "asked for a snapshot all the same"
    assert "no room" in capsys.readouterr().err
    status = status_of(tmp)
    assert status["no_room"] and "AOF" in status["no_room"] and status["last_failure"]
    assert 'redis_vps_backup_no_room{redis_instance="queue"} 1' in prog.metrics_text("queue", status)
    assert sorted(p.name for p in (tmp / "dest").iterdir()) == [".lock", "status.json"]


def test_a_disk_that_fills_during_the_copy_leaves_nothing_behind(setup, monkeypatch):
    tmp, config = setup
    server = FakeServer(config["socket"], config["data_dir"], rdb=b"REDIS0011" + os.urandom(5000))
    real_fsync = os.fsync

    def full(fd):
        if os.readlink("/proc/self/fd/%d" % fd).endswith(".partial"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    try:
        assert prog.main(["backup", "queue"]) == 1
    finally:
        server.close()
    assert sorted(p.name for p in (tmp / "dest").iterdir()) == [".lock", "status.json"]
    assert "ran out of space" in status_of(tmp)["no_room"]


def test_a_failed_checksum_write_keeps_no_snapshot_without_its_checksum(setup, monkeypatch):
    tmp, config = setup
    server = FakeServer(config["socket"], config["data_dir"])
    real = prog.write_atomic

    def failing(path, text, mode):
        if path.endswith(".sha256"):
            raise OSError(errno.EIO, "Input/output error")
        real(path, text, mode)

    monkeypatch.setattr(prog, "write_atomic", failing)
    try:
        assert prog.main(["backup", "queue"]) == 1
    finally:
        server.close()
    assert sorted(p.name for p in (tmp / "dest").iterdir()) == [".lock", "status.json"]


def test_what_a_killed_run_left_is_removed_by_the_next(setup):
    tmp, config = setup
    dest = tmp / "dest"
    for name in (".queue-20250101T000000Z.rdb.gz.partial", ".status.json.tmp", ".restore.rdb",
                 "queue-20250101T000000Z.rdb.gz.sha256"):       # a checksum whose snapshot never came
        (dest / name).write_text("x")
    server = FakeServer(config["socket"], config["data_dir"])
    try:
        assert prog.main(["backup", "queue"]) == 0
    finally:
        server.close()
    left = sorted(p.name for p in dest.iterdir())
    assert len([n for n in left if n.endswith(".rdb.gz")]) == 1 and len(left) == 4, left   # + .sha256, lock, status


@pytest.mark.skipif(os.geteuid() != 0, reason="a restore runs as root")
def test_a_refused_restore_leaves_no_staging_file(setup):
    tmp, config = setup
    snapshot_file(config, "queue-20250101T000000Z", b"REDIS0011" + b"\x00" * 10)
    (tmp / "check-rdb").write_text("#!/bin/sh\necho 'RDB CRC error'; exit 1\n")
    with pytest.raises(prog.Refused, match="not sound"):
        prog.restore(config, "", offsite=False, check_only=False, password="pw")
    assert not (tmp / "dest" / ".restore.rdb").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="a restore runs as root")
def test_a_restore_without_room_for_its_staging_file_is_refused(setup, monkeypatch):
    tmp, config = setup
    snapshot_file(config, "queue-20250101T000000Z", b"REDIS0011" + b"\x00" * 10)
    monkeypatch.setattr(prog, "free_bytes", lambda path: 1000)
    with pytest.raises(prog.NoRoom, match="no room to restore"):
        prog.restore(config, "", offsite=False, check_only=False, password="pw")
    assert not (tmp / "dest" / ".restore.rdb").exists()


def test_the_health_report_says_when_backups_are_refused_for_lack_of_room():
    from ansible_collections.redis_vps.server.plugins.filter import redis_health
    record = {"name": "queue", "config": {"appendonly": "yes"}, "backup": {"dir": "/var/backups/redis/queue"}}
    info = {"role": "master", "used_memory": "1", "maxmemory": "100", "aof_enabled": "1",
            "aof_last_write_status": "ok", "aof_last_bgrewrite_status": "ok", "rdb_last_bgsave_status": "ok"}
    refused = {"last_success": 100, "last_failure": 200, "last_error": "no room: x", "no_room": "no room: x"}
    health = redis_health.redis_health({"item": record, "info": info, "backup": refused}, now=300)
    assert ("CRIT", "queue: backups are refused for lack of room: no room: x") in health["verdicts"]
    cleared = dict(refused, last_success=300)            # a good backup since: no longer said
    health = redis_health.redis_health({"item": record, "info": info, "backup": cleared}, now=300)
    assert health["backup"]["no_room"] is None and not any("room" in text for _, text in health["verdicts"])
