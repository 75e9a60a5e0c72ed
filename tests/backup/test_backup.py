"""Backups and restores on provisioned hosts (molecule/backup): the timer and its service, the
least-privilege ACL user, a backup/FLUSHALL/restore round trip of keys, a stream's pending
entries and a PHP session, the refusals that must leave an instance exactly as it was, a backup
under a steady writer, the health report, and the disaster case (a fresh VPS restored from the
off-site restic repository). Runs inside a molecule scenario (it runs playbooks and replaces a
container); every path, unit and command follows the host's engine.
"""
import json
import os
import pathlib
import re
import shlex
import subprocess
import time

import pytest
import testinfra
import yaml
from helpers import (INVENTORY, REPO, Redis, changed_count, credentials_of, fill, instances_of, php_session,
                     playbook, put_file, put_program)

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

BACKUP = REPO / "playbooks" / "backup.yml"
RESTORE = REPO / "playbooks" / "restore.yml"
KEYS = 10000
# The newest RDB version each platform's engine reads (Redis 7.0, Redis 8.0, Valkey 8.1).
NEWEST_RDB = {("bookworm", "redis"): 10, ("trixie", "redis"): 12, ("trixie", "valkey"): 11}
DISASTER_HOST = os.environ.get("REDIS_VPS_NS", "") + "bkp-d13-redis"
# The writer test leaves its figures here for docs/backup.md (the project's state folder, tools/lib.sh).
FIGURES = pathlib.Path(os.environ.get("REDIS_VPS_STATE", "/var/tmp/redis-vps"))


class Vps:
    """One provisioned host: testinfra host, Redis helper, its instance records, inventory name."""

    def __init__(self, host):
        self.host = host
        self.hostvars = host.ansible.get_variables()
        self.name = self.hostvars["inventory_hostname"]
        self.instances = instances_of(self.hostvars)
        self.redis = Redis(host, credentials_of(self.hostvars), self.instances)
        self.queue = self.instances["queue"]
        self.engine = self.queue["engine"]

    def keyspace(self):
        return {k: v.split(",")[0] for k, v in self.redis.info("queue", "keyspace").items() if k.startswith("db")}

    def state(self):
        """What a refused restore must not move: the server (run_id), its keys, the checksum
        of every file in its data folder, and the engine's data root (no folder set aside)."""
        data = self.queue["config"]["dir"]
        sums = self.host.run("find %s -type f -print0 | sort -z | xargs -0 sha256sum" % data).stdout
        return (self.redis.info("queue", "server")["run_id"], self.keyspace(), sums,
                self.host.run("ls %s" % os.path.dirname(data)).stdout)

    def session(self, cookie=""):
        return php_session(self.host, "/var/www/backup", cookie)

    def snapshots(self):
        folder = self.queue["backup"]["dir"]
        return sorted(self.host.run("ls %s" % folder).stdout.split())

    def pending(self, stream):
        """The stream's pending entries: (count, consumer names)."""
        summary = self.redis.run("queue", "XPENDING", stream, "workers", user="default").split("\n")
        return int(summary[0]), summary[3:]


@pytest.fixture(scope="module")
def every_vps():
    return [Vps(host) for host in testinfra.get_hosts(["ansible://redis_servers"], ansible_inventory=INVENTORY)]


def ok(rc, out):
    assert rc == 0, out[-4000:]
    return out


# --- On each host ---------------------------------------------------------------------------------

def test_the_timer_runs_the_projects_own_unit_for_the_persistent_instance_only(host, instances, engine):
    queue, cache = instances["queue"], instances["cache"]
    timer = host.service(queue["backup"]["timer"])
    assert timer.is_enabled and timer.is_running
    assert "backup" not in cache
    timers = host.run("systemctl list-timers --all --no-legend 'redis-vps-backup@*'").stdout.strip().splitlines()
    assert len(timers) == 1 and "redis-vps-backup@queue.timer" in timers[0]
    show = host.run("systemctl show %s -p User -p ExecStart -p RuntimeDirectory" % queue["backup"]["service"]).stdout
    assert "User=%s" % engine["user"] in show and "redis-vps-backup backup queue" in show
    assert host.run("systemctl show %s -p OnCalendar --value" % queue["backup"]["timer"]).stdout.strip() \
        or "hourly" in host.file("/etc/systemd/system/redis-vps-backup@.timer").content_string


def test_secrets_are_root_only_and_on_no_command_line(host, credentials):
    for name in ("backup-password", "restic-password", "ssh-key"):
        secret = host.file("/etc/redis-vps-backup/" + name)
        assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600), name
    assert host.file("/etc/redis-vps-backup/backup-password").content_string.strip() == credentials["backup"]
    units = host.run("cat /etc/systemd/system/redis-vps-backup@.service /etc/systemd/system/redis-vps-backup@.timer "
                     "/etc/redis-vps-backup/queue.json").stdout
    for secret in credentials.values():
        assert secret not in units


def test_the_backup_user_may_snapshot_and_nothing_else(redis):
    for command in (["BGSAVE"], ["BGSAVE", "SCHEDULE"], ["LASTSAVE"], ["INFO", "persistence"], ["PING"]):
        assert redis.run("queue", "ACL", "DRYRUN", "backup", *command) == "OK", command
    for command in (["GET", "k"], ["SET", "k", "v"], ["FLUSHALL"], ["CONFIG", "GET", "dir"], ["KEYS", "*"],
                    ["SAVE"], ["SHUTDOWN"], ["ACL", "LIST"], ["SUBSCRIBE", "c"]):
        assert "no permissions" in redis.run("queue", "ACL", "DRYRUN", "backup", *command), command
    assert "backup" not in redis.run("cache", "ACL", "USERS").split()


# --- Every host at once (one playbook run each) -------------------------------------------------

def test_flushall_then_restore_brings_back_every_key_pending_entry_and_session(every_vps, tmp_path):
    before = {}
    for vps in every_vps:
        assert "errors: 0" in fill(vps.host, vps.redis, "queue", "bk", count=KEYS, size=100)
        for job in range(3):
            vps.redis.run("queue", "XADD", "bk:stream", "*", "job", job, user="default")
        vps.redis.run("queue", "XGROUP", "CREATE", "bk:stream", "workers", "0", user="default")
        vps.redis.run("queue", "XREADGROUP", "GROUP", "workers", "w1", "COUNT", "1", "STREAMS", "bk:stream", ">",
                      user="default")    # read, never acknowledged: one pending entry
        cookie, count = vps.session()
        before[vps.name] = (vps.keyspace(), vps.pending("bk:stream"), cookie, count)
        assert sum(int(v.split("=")[1]) for v in before[vps.name][0].values()) >= KEYS + 2

    out = ok(*playbook(path=BACKUP, tmp_path=tmp_path))
    for vps in every_vps:
        assert re.search(r"queue: \d+ local snapshots in %s" % re.escape(vps.queue["backup"]["dir"]), out), out[-3000:]
        assert re.search(r"queue: 1 off-site snapshots|queue: \d+ off-site snapshots", out)
        newest = [n for n in vps.snapshots() if n.endswith(".rdb.gz")][-1]
        check = vps.host.run("cd %s && sha256sum -c %s.sha256" % (vps.queue["backup"]["dir"], newest))
        assert check.rc == 0 and "OK" in check.stdout
        vps.redis.run("queue", "FLUSHALL")
        assert vps.keyspace() == {}

    rc, out = playbook(path=RESTORE, tmp_path=tmp_path)
    assert rc != 0 and "would restore 3 hosts at once: name one with --limit" in out, out[-3000:]
    out = ok(*playbook("-e", "redis_restore_all_hosts=true", path=RESTORE, tmp_path=tmp_path))
    for vps in every_vps:
        keyspace, pending, cookie, count = before[vps.name]
        assert vps.keyspace() == keyspace
        assert vps.redis.run("queue", "GET", "bk:%d" % (KEYS - 1), user="default") == "x" * 100
        assert vps.pending("bk:stream") == pending and pending[0] == 1
        assert vps.session(cookie)[1] == count + 1, "the PHP session did not come back"
        # The AOF is on again, with a new base written by the rewrite; no drop-in is left.
        assert vps.redis.config("queue", "appendonly") == "yes"
        assert vps.redis.info("queue", "persistence")["aof_enabled"] == "1"
        data = vps.queue["config"]["dir"]
        assert vps.host.run("ls %s/appendonlydir/*.manifest" % data).rc == 0
        assert not vps.host.file("/run/systemd/system/%s.d" % vps.queue["service"]).exists
        # The data it had (the flushed instance) is kept aside, never deleted.
        aside = vps.host.run("ls -d %s.before-restore-*" % data).stdout.split()
        assert aside and vps.host.file(aside[-1] + "/appendonlydir").is_directory
        assert re.search(r"queue: %d keys back from queue-\d{8}T\d{6}Z" % sum(
            int(v.split("=")[1]) for v in keyspace.values()), out), out[-3000:]


CRAFT = """
import gzip, hashlib, sys
folder, newest, name, how, version = sys.argv[1:6]
raw = gzip.decompress(open("%s/%s" % (folder, newest), "rb").read())
if how == "too-new":
    raw = b"REDIS%04d" % int(version) + raw[9:]
if how == "rdb-damaged":
    raw = raw[:-20] + bytes(b ^ 0xFF for b in raw[-20:-12]) + raw[-12:]
good = packed = gzip.compress(raw, mtime=0)
if how == "gz-damaged":
    middle = len(good) // 2
    packed = good[:middle] + bytes(b ^ 0xFF for b in good[middle:middle + 8]) + good[middle + 8:]
open("%s/%s.rdb.gz" % (folder, name), "wb").write(packed)
open("%s/%s.rdb.gz.sha256" % (folder, name), "w").write("%s  %s.rdb.gz\\n" % (hashlib.sha256(good).hexdigest(), name))
"""


def crafted(vps, name, how):
    """A snapshot made, on the host, from the newest good one: a header the engine cannot read,
    the .gz damaged behind its checksum, or the RDB damaged with a checksum file to match."""
    newest = [n for n in vps.snapshots() if n.endswith(".rdb.gz")][-1]
    version = NEWEST_RDB[(vps.host.system_info.codename, vps.engine)] + 1
    vps.host.run_test("python3 -c %s %s %s %s %s %d" % (shlex.quote(CRAFT), vps.queue["backup"]["dir"], newest, name, how,
                                                         version))


REFUSALS = [
    ({"redis_restore_snapshot": "queue-19990101T000000Z"}, None, r"no snapshot 'queue-19990101T000000Z' of queue"),
    ({"redis_restore_snapshot": "queue-20000101T000001Z"}, "too-new",
     r"the snapshot is RDB version \d+, but \w+ [\d.]+ reads RDB up to version \d+: it cannot load it"),
    ({"redis_restore_snapshot": "queue-20000101T000002Z"}, "gz-damaged", r"does not match its checksum"),
    ({"redis_restore_snapshot": "queue-20000101T000003Z"}, "rdb-damaged", r"check-rdb says the snapshot is not sound"),
    ({"redis_restore_instance": "cache"}, None, r"'cache' keeps nothing on disk \(no persistence\)"),
]


@pytest.fixture
def no_scheduled_backup(every_vps):
    """The timers stopped (a scheduled BGSAVE would rewrite dump.rdb under the comparison), and
    started again after."""
    for vps in every_vps:
        vps.host.run_test("systemctl stop %s %s" % (vps.queue["backup"]["timer"], vps.queue["backup"]["service"]))
    yield
    for vps in every_vps:
        vps.host.run_test("systemctl start %s" % vps.queue["backup"]["timer"])


@pytest.mark.usefixtures("no_scheduled_backup")
@pytest.mark.parametrize("extra_vars, how, message", REFUSALS, ids=["unknown-name", "engine-cannot-load",
                                                                     "gz-checksum", "rdb-checksum", "no-persistence"])
def test_a_refused_restore_leaves_the_instance_and_its_data_as_they_were(every_vps, tmp_path, extra_vars, how, message):
    if how:
        for vps in every_vps:
            crafted(vps, extra_vars["redis_restore_snapshot"], how)
    before = [vps.state() for vps in every_vps]
    rc, out = playbook(path=RESTORE, extra_vars=dict(extra_vars, redis_restore_all_hosts=True), tmp_path=tmp_path)
    assert rc != 0
    for vps in every_vps:
        said = " ".join(re.findall(r"fatal: \[%s\](.*?)(?=(?:ok|changed|failed|fatal|skipping): \[|TASK \[|PLAY |$)"
                                   % re.escape(vps.name), out))
        assert re.search(message, said), (vps.name, said[-2000:] or out[-3000:])
        assert "nothing was changed" in said.lower() or "Nothing was changed" in said
    assert [vps.state() for vps in every_vps] == before


# --- On each host: a backup under load ----------------------------------------------------------

def test_a_backup_under_a_steady_writer_blocks_no_command_and_loses_no_write(host, redis, instances):
    """A client writes steadily (5,000 SETs a second) for 8 s; a backup runs in the middle. Every acknowledged
    write is there afterwards, the snapshot holds some of them, and no command waited long. Meanwhile no
    process shows a password on its command line."""
    queue = instances["queue"]
    put_program(host, "/usr/local/lib/bkp_writer.py", pathlib.Path(__file__).parent / "writer.py")
    put_file(host, "/root/.bkp_pw", redis.credentials["queue"] + "\n", mode="0600")
    keys_before = int(redis.run("queue", "DBSIZE"))
    host.run_test(
        "rm -f /root/bkp_end /root/bkp_ps.txt;"
        " python3 /usr/local/lib/bkp_writer.py %s 8 5000 < /root/.bkp_pw > /root/bkp_writer.json & sleep 2;"
        " date +%%s.%%N > /root/bkp_start; (systemctl start %s; date +%%s.%%N > /root/bkp_end) &"
        " while [ ! -f /root/bkp_end ]; do ps -eo args >> /root/bkp_ps.txt; sleep 0.05; done; wait; rm -f /root/.bkp_pw"
        % (queue["config"]["unixsocket"], queue["backup"]["service"]))
    start, end = (float(host.file("/root/bkp_%s" % name).content_string) for name in ("start", "end"))
    report = json.loads(host.file("/root/bkp_writer.json").content_string)
    during = [ms for when, ms in report["timings"] if start <= when <= end]
    status = json.loads(host.file(queue["backup"]["status_file"]).content_string)
    processes = host.file("/root/bkp_ps.txt").content_string
    assert "redis-vps-backup backup queue" in processes and "restic" in processes
    for secret in list(redis.credentials.values()) + [host.file("/etc/redis-vps-backup/restic-password").content_string.strip()]:
        assert secret not in processes
    figures = {"host": host.backend.get_hostname(), "acked": report["acked"], "lost": report["lost"],
               "backup_seconds": round(end - start, 2), "commands_during_backup": len(during),
               "max_ms_during_backup": round(max(during), 2), "max_ms": round(report["max_ms"], 2),
               "p99_ms": round(report["p99_ms"], 3), "snapshot_keys": status["last_keys"]}
    FIGURES.mkdir(parents=True, exist_ok=True)
    with open(FIGURES / ("backup-latency-%s.json" % figures["host"]), "w") as handle:
        json.dump(figures, handle)
    assert report["lost"] == 0 and report["acked"] > 10000, figures
    assert len(during) > 1000, figures           # the writer went on while the backup ran
    assert figures["max_ms_during_backup"] < 500, figures
    assert int(redis.run("queue", "DBSIZE")) == keys_before + report["acked"]
    assert keys_before < status["last_keys"] < keys_before + report["acked"], figures
    assert status["last_error"] is None


# --- The health report ---------------------------------------------------------------------------

def test_the_health_report_shows_each_persistent_instances_last_backup(every_vps, tmp_path):
    report = tmp_path / "status.json"
    out = ok(*playbook("-e", "redis_status_json=%s" % report, path=REPO / "playbooks" / "status.yml"))
    assert changed_count(out) == 0
    health = json.loads(report.read_text())
    for vps in every_vps:
        queue = {h["name"]: h for h in health[vps.name]}["queue"]
        cache = {h["name"]: h for h in health[vps.name]}["cache"]
        assert cache["backup"] is None
        assert queue["backup"]["age_seconds"] < 600 and not queue["backup"]["failed"]
        assert queue["backup"]["offsite_snapshot"]
        assert re.search(r"backup queue-\d{8}T\d{6}Z, \d+[sm] ago, \d+ kept in %s" % re.escape(vps.queue["backup"]["dir"]),
                         out), out[-3000:]
        assert "off-site sftp:restic@bkp-sftp:/srv/restic/%s:" % vps.name in out


# --- The disaster: the VPS is lost, a fresh one is restored from the off-site copy ----------------

def recreate(name):
    """Remove the container `name` and start a fresh one like it (molecule.yml's platform)."""
    scenario = pathlib.Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    # molecule.yml as molecule reads it: ${REDIS_VPS_NS} (unset: empty) before each name.
    text = (scenario / "molecule.yml").read_text().replace("${REDIS_VPS_NS}", os.environ.get("REDIS_VPS_NS", ""))
    platform = next(p for p in yaml.safe_load(text)["platforms"] if p["name"] == name)
    subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
    cmd = ["docker", "run", "-d", "--name", name, "--hostname", platform["hostname"],
           "--cgroupns", platform["cgroupns_mode"]]
    cmd += [arg for cap in platform["capabilities"] for arg in ("--cap-add", cap)]
    cmd += [arg for opt in platform["security_opts"] for arg in ("--security-opt", opt)]
    cmd += [arg for vol in platform["volumes"] for arg in ("-v", vol)]
    cmd += [arg for fs in platform["tmpfs"] for arg in ("--tmpfs", fs)]
    cmd += [arg for net in platform["networks"] for arg in ("--network", net["name"])]
    subprocess.run(cmd + [platform["image"], platform["command"]], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True,
                         text=True).stdout.strip() not in ("running", "degraded"):
        assert time.monotonic() < deadline, "%s did not boot" % name
        time.sleep(0.5)


def test_a_fresh_vps_is_restored_from_the_offsite_repository(every_vps, tmp_path):
    vps = next(v for v in every_vps if v.name == DISASTER_HOST)
    fill(vps.host, vps.redis, "queue", "dz", count=2000, size=50)
    cookie, count = vps.session()
    ok(*playbook(path=BACKUP, tmp_path=tmp_path, limit=vps.name))
    before = (vps.keyspace(), vps.pending("bk:stream"))
    data = vps.redis.run("queue", "GET", "dz:1999", user="default")

    recreate(vps.name)
    fresh = Vps(testinfra.get_host("ansible://%s" % vps.name, ansible_inventory=INVENTORY))
    assert fresh.host.run("ls %s" % fresh.queue["config"]["dir"]).rc != 0, "not a fresh VPS"
    ok(*playbook(tmp_path=tmp_path, limit=vps.name))
    assert fresh.keyspace() == {}
    out = ok(*playbook("-e", "redis_restore_offsite=true", path=RESTORE, tmp_path=tmp_path, limit=vps.name))
    assert re.search(r"keys back from offsite:[0-9a-f]{8}", out), out[-3000:]
    assert (fresh.keyspace(), fresh.pending("bk:stream")) == before
    assert fresh.redis.run("queue", "GET", "dz:1999", user="default") == data
    assert fresh.session(cookie)[1] == count + 1, "the PHP session did not come back"
