"""The backup program (roles/redis_backup/files/redis_vps_backup.py): its pure rules, and
a backup and the restore's refusals against a fake server on a unix socket."""
import gzip
import hashlib
import json
import os
import stat
import time

import pytest
import redis_vps_backup as prog
from resp_server import RespServer, unix_listener

HOUR = 3600
T0 = 1_800_000_000 - 1_800_000_000 % 86400     # a UTC midnight


def test_rdb_version_from_the_header():
    assert prog.rdb_version(b"REDIS0010\xfa") == 10
    assert prog.rdb_version(b"REDIS0012") == 12
    assert prog.rdb_version(b"REDIS00") is None
    assert prog.rdb_version(b"VALKEY080") is None
    assert prog.rdb_version(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00") is None


@pytest.mark.parametrize("engine,version,newest", [
    ("redis", "7.0.15", 10), ("redis", "7.2.4", 11), ("redis", "7.4.1", 12), ("redis", "8.0.2", 12),
    ("valkey", "8.1.1", 11), ("valkey", "7.2.5", 11), ("redis", "5.0.7", None), ("redis", "x", None),
    ("keydb", "6.3.4", None)])
def test_newest_rdb_version_each_engine_reads(engine, version, newest):
    assert prog.max_rdb_version(engine, version) == newest


def test_server_version_from_its_version_line():
    assert prog.server_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c\n") \
        == ("redis", "7.0.15")
    assert prog.server_version("Valkey server v=8.1.1 sha=00000000:0 malloc=jemalloc-5.3.0") == ("valkey", "8.1.1")
    assert prog.server_version("nonsense") == (None, None)


def test_names_carry_the_snapshot_time_in_utc():
    name = prog.snapshot_name("queue", T0 + 3 * HOUR + 61)
    assert name == "queue-%sT030101Z" % time.strftime("%Y%m%d", time.gmtime(T0))
    assert prog.snapshot_time(name) == T0 + 3 * HOUR + 61
    assert prog.snapshot_time("queue-latest") is None


def test_retention_keeps_the_newest_of_each_hour_and_day():
    # Every 20 minutes for 10 days: 720 snapshots.
    names = [prog.snapshot_name("queue", T0 + i * 1200) for i in range(720)]
    kept = prog.keep(names, hourly=24, daily=7)
    newest = names[-1]
    assert newest in kept
    hourly = {n for n in names[-72:] if prog.snapshot_time(n) % HOUR == 2400}    # the last of each hour
    assert len(hourly) == 24 and hourly <= kept
    days = {int(prog.snapshot_time(n) // 86400) for n in kept}
    assert len(days) == 7                       # today (hourly ones) and 6 more days, one each
    assert len(kept) == 24 + 6
    assert prog.keep(names, hourly=0, daily=1) == {newest}
    assert prog.keep([], 24, 7) == set()


def test_retention_with_gaps_counts_hours_that_have_a_snapshot():
    names = [prog.snapshot_name("queue", T0 - d * 86400) for d in range(30)]    # one a day
    kept = prog.keep(names, hourly=24, daily=7)
    assert len(kept) == 24     # 24 distinct hours, one per day: the 24 newest days


def test_check_rdb_figures():
    out = ("[offset 0] Checking RDB file dump.rdb\n[offset 27] AUX FIELD redis-ver = '7.0.15'\n"
           "[info] 10003 keys read\n[info] 2 expires\n[info] 1 already expired\n"
           "[offset 1180332] Checksum OK\n[offset 1180332] \\o/ RDB looks OK! \\o/\n")
    assert prog.parse_check_rdb(out) == {"keys": 10003, "expires": 2, "already_expired": 1}


def test_sftp_command_uses_our_key_and_known_hosts_only():
    cmd = prog.sftp_command("sftp:restic@bkp-sftp:/srv/restic/vps1", "/run/credentials/x/ssh-key", "/k h")
    assert cmd.startswith("ssh -i /run/credentials/x/ssh-key -o IdentitiesOnly=yes -o BatchMode=yes")
    assert "-o StrictHostKeyChecking=yes" in cmd and "'UserKnownHostsFile=/k h'" in cmd
    assert cmd.endswith(" restic@bkp-sftp -s sftp")
    assert "-p 2222 backup@host -s sftp" in prog.sftp_command("sftp://backup@host:2222//srv/r", "k", "h")
    assert prog.sftp_command("sftp:host:relative/path", "k", "h").endswith(" host -s sftp")
    with pytest.raises(prog.Refused):
        prog.sftp_command("sftp:/no/host", "k", "h")


def test_env_file_values_round_trip_the_roles_quoting(tmp_path):
    value = 'a"b\\c d=e'
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')    # as templates/restic.env.j2 writes it
    path = tmp_path / "restic.env"
    path.write_text('# comment\nAWS_SECRET_ACCESS_KEY="%s"\nPLAIN=x\n\n' % quoted)
    assert prog.load_env_file(str(path)) == {"AWS_SECRET_ACCESS_KEY": value, "PLAIN": "x"}
    assert prog.load_env_file(str(tmp_path / "missing")) == {}


# --- A backup against a fake server -----------------------------------------------------

class FakeServer(RespServer):
    """A unix-socket server that speaks enough RESP: AUTH, INFO, LASTSAVE, BGSAVE [SCHEDULE].
    BGSAVE writes `rdb` into dump.rdb and moves LASTSAVE on, or fails (bgsave_ok False)."""

    def __init__(self, path, data_dir, rdb=b"REDIS0011" + b"\x00" * 100, password="pw", rewriting=False,
                 bgsave_ok=True):
        self.path, self.data_dir, self.rdb, self.password = path, data_dir, rdb, password
        self.rewriting, self.bgsave_ok = rewriting, bgsave_ok
        self.lastsave, self.status = 1000, "ok"
        self.born, self.scheduled = time.monotonic(), False
        super().__init__(unix_listener(path))

    def answer(self, args):
        name = args[0].upper()
        if name == "AUTH":
            return b"+OK\r\n" if args == ["AUTH", "backup", self.password] else b"-WRONGPASS invalid\r\n"
        if name == "LASTSAVE":
            return b":%d\r\n" % self.lastsave
        if name == "INFO":
            # An AOF rewrite (`rewriting` seconds long) ends here; a BGSAVE scheduled meanwhile runs then.
            rewriting = self.rewriting and time.monotonic() < self.born + self.rewriting
            if not rewriting and self.scheduled:
                self.scheduled = False
                self.save()
            text = ("# Persistence\r\nrdb_bgsave_in_progress:0\r\nrdb_last_bgsave_status:%s\r\n"
                    "aof_rewrite_in_progress:%d\r\n# Memory\r\nused_memory_dataset:%d\r\n"
                    % (self.status, rewriting, len(self.rdb))).encode()
            return b"$%d\r\n%s\r\n" % (len(text), text)
        if name == "BGSAVE":
            rewriting = self.rewriting and time.monotonic() < self.born + self.rewriting
            if rewriting and args[1:] != ["SCHEDULE"]:
                # What Redis 7/8 and Valkey 8 answer (older releases said "...rewriting in progress").
                return (b"-ERR Another child process is active (AOF?): can't BGSAVE right now. "
                        b"Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.\r\n")
            if rewriting:
                self.scheduled = True
                return b"+Background saving scheduled\r\n"
            self.save()
            return b"+Background saving started\r\n"
        return b"-ERR unknown command\r\n"

    def save(self):
        if self.bgsave_ok:
            with open(os.path.join(self.data_dir, "dump.rdb"), "wb") as handle:
                handle.write(self.rdb)
            self.lastsave = int(time.time())
            self.status = "ok"
        else:
            self.status = "err"



@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A config, credentials and fake check-rdb and server binaries in tmp_path."""
    for sub in ("etc", "creds", "data", "dest"):
        (tmp_path / sub).mkdir()
    (tmp_path / "creds" / "backup-password").write_text("pw\n")
    check = tmp_path / "check-rdb"
    check.write_text("#!/bin/sh\nhead -c 5 \"$1\" | grep -q REDIS || { echo 'Wrong signature'; exit 1; }\n"
                     "echo '[info] 3 keys read'; echo '[info] 1 expires'; echo '[info] 0 already expired'\n"
                     "echo '\\o/ RDB looks OK! \\o/'\n")
    server = tmp_path / "server"
    server.write_text("#!/bin/sh\necho 'Redis server v=8.0.2 sha=00000000:0 malloc=jemalloc-5.3.0'\n")
    for path in (check, server):
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    config = {"instance": "queue", "engine": "redis", "service": "redis-server@queue.service",
              "socket": str(tmp_path / "redis.sock"), "data_dir": str(tmp_path / "data"), "dbfilename": "dump.rdb",
              "dest": str(tmp_path / "dest"), "server_bin": str(server), "check_rdb": str(check),
              "exec_start": "/bin/false", "keep_hourly": 24, "keep_daily": 7, "warn_after_seconds": 10800,
              "offsite": None, "wait_seconds": 5}
    (tmp_path / "etc" / "queue.json").write_text(json.dumps(config))
    monkeypatch.setattr(prog, "CONFIG_DIR", str(tmp_path / "etc"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    return tmp_path, config


def test_a_backup_keeps_a_gzipped_checksummed_copy_and_a_status(setup):
    tmp, config = setup
    rdb = b"REDIS0012" + os.urandom(3000)
    server = FakeServer(config["socket"], config["data_dir"], rdb=rdb)
    try:
        assert prog.main(["backup", "queue"]) == 0
    finally:
        server.close()
    assert ["AUTH", "backup", "pw"] in server.commands and ["BGSAVE"] in server.commands
    name = prog.snapshot_name("queue", server.lastsave)
    packed = tmp / "dest" / (name + ".rdb.gz")
    assert gzip.decompress(packed.read_bytes()) == rdb
    assert (tmp / "dest" / (name + ".rdb.gz.sha256")).read_text() == "%s  %s\n" % (
        hashlib.sha256(packed.read_bytes()).hexdigest(), packed.name)
    assert stat.S_IMODE(packed.stat().st_mode) == 0o600
    status = json.loads((tmp / "dest" / "status.json").read_text())
    assert status["last_snapshot"] == name and status["last_error"] is None
    assert status["last_success"] == server.lastsave and status["last_keys"] == 3 and status["last_rdb_version"] == 12


def test_during_an_aof_rewrite_the_snapshot_is_scheduled(setup):
    tmp, config = setup
    server = FakeServer(config["socket"], config["data_dir"], rewriting=1.5)    # a rewrite of 1.5 s
    try:
        assert prog.main(["backup", "queue"]) == 0
    finally:
        server.close()
    assert ["BGSAVE", "SCHEDULE"] in server.commands and ["BGSAVE"] not in server.commands
    assert len(list((tmp / "dest").glob("*.rdb.gz"))) == 1


def test_a_failed_snapshot_fails_the_run_and_says_so_in_the_status(setup, capsys):
    tmp, config = setup
    server = FakeServer(config["socket"], config["data_dir"], bgsave_ok=False)
    try:
        assert prog.main(["backup", "queue"]) == 1
    finally:
        server.close()
    assert "rdb_last_bgsave_status:err" in capsys.readouterr().err
    status = json.loads((tmp / "dest" / "status.json").read_text())
    assert "failed" in status["last_error"] and "last_success" not in status
    assert not list((tmp / "dest").glob("*.rdb.gz"))


def test_a_wrong_password_fails(setup):
    tmp, config = setup
    server = FakeServer(config["socket"], config["data_dir"], password="other")
    try:
        assert prog.main(["backup", "queue"]) == 1
    finally:
        server.close()


def test_an_instance_without_settings_is_refused(setup, capsys):
    assert prog.main(["backup", "cache"]) == 2
    assert "only an instance with persistence" in capsys.readouterr().err


# --- The restore's refusals: each before anything changes ---------------------------------

def snapshot_file(config, name, rdb):
    packed = os.path.join(config["dest"], name + ".rdb.gz")
    with open(packed, "wb") as handle:
        handle.write(gzip.compress(rdb))
    with open(packed + ".sha256", "w") as handle:
        handle.write("%s  %s\n" % (prog.sha256_of(packed), os.path.basename(packed)))
    return packed


def test_stage_checks_a_sound_snapshot(setup):
    tmp, config = setup
    snapshot_file(config, "queue-20250101T000000Z", b"REDIS0011" + b"\x00" * 10)
    snapshot_file(config, "queue-20250102T000000Z", b"REDIS0012" + b"\x00" * 10)
    name, staging, figures = prog.stage(config, "", offsite=False)
    assert name == "queue-20250102T000000Z" and figures["rdb_version"] == 12 and figures["keys"] == 3
    name, _, figures = prog.stage(config, "queue-20250101T000000Z.rdb.gz", offsite=False)
    assert name == "queue-20250101T000000Z" and figures["rdb_version"] == 11


@pytest.mark.parametrize("case", ["unknown", "damaged", "too-new", "not-rdb", "no-checksum", "none"])
def test_stage_refuses(setup, case):
    tmp, config = setup
    name = "queue-20250101T000000Z"
    if case != "none":
        packed = snapshot_file(config, name, b"REDIS0013" if case == "too-new" else
                               b"HELLO0011" if case == "not-rdb" else b"REDIS0011" + b"\x00" * 10)
    if case == "damaged":
        with open(packed, "r+b") as handle:
            handle.seek(12)
            handle.write(b"\xff\xff")
    if case == "no-checksum":
        os.unlink(packed + ".sha256")
    words = {"unknown": "no snapshot 'queue-19990101T000000Z'", "damaged": "does not match its checksum",
             "too-new": "RDB version 13, but redis 8.0.2 reads RDB up to version 12", "not-rdb": "not an RDB file",
             "no-checksum": "no checksum file", "none": "no local snapshot"}[case]
    with pytest.raises(prog.Refused, match=words.replace("(", r"\(")):
        prog.stage(config, "queue-19990101T000000Z" if case == "unknown" else "", offsite=False)


def test_offsite_without_a_repository_is_refused(setup):
    tmp, config = setup
    with pytest.raises(prog.Refused, match="no off-site repository"):
        prog.stage(config, "", offsite=True)


def test_metrics_for_node_exporters_textfile_collector():
    good = prog.metrics_text("queue", {"last_success": 1700000000, "offsite_repository": "sftp:x:/y",
                                       "offsite": {"last_success": 1700000005}})
    assert 'redis_vps_backup_last_success_timestamp_seconds{redis_instance="queue"} 1700000000\n' in good
    assert 'redis_vps_backup_last_run_success{redis_instance="queue"} 1\n' in good
    assert 'redis_vps_backup_offsite_last_success_timestamp_seconds{redis_instance="queue"} 1700000005\n' in good
    failed = prog.metrics_text("queue", {"last_success": 1700000000, "last_failure": 1700003600})
    assert 'redis_vps_backup_last_run_success{redis_instance="queue"} 0\n' in failed and "offsite" not in failed
    assert 'redis_vps_backup_last_success_timestamp_seconds{redis_instance="queue"} 0\n' in prog.metrics_text("queue", {})


def test_a_damaged_rdb_whose_report_is_not_text_is_refused(setup):
    tmp, config = setup
    check = tmp / "check-rdb"
    check.write_text("#!/bin/sh\nprintf '[info] 3 keys read\\n\\224\\377 garbage\\nRDB CRC error\\n'; exit 1\n")
    snapshot_file(config, "queue-20250101T000000Z", b"REDIS0011" + b"\x00" * 10)
    with pytest.raises(prog.Refused, match="check-rdb says the snapshot is not sound: .*RDB CRC error"):
        prog.stage(config, "", offsite=False)
