#!/usr/bin/python3
"""redis-vps-backup: snapshots of a persistent Redis (or Valkey) instance, kept
compressed and checksummed on the host, optionally copied off-site with restic,
and put back into the instance on request.

Installed by the redis_backup role as /usr/local/sbin/redis-vps-backup; Python 3
standard library only. Every setting comes from /etc/redis-vps-backup/INSTANCE.json,
written by the role; secrets are read from systemd's credentials folder
($CREDENTIALS_DIRECTORY, LoadCredential=) or, run by root, from /etc/redis-vps-backup.

  redis-vps-backup backup INSTANCE      one snapshot now (what the timer runs)
  redis-vps-backup list INSTANCE        the local and off-site snapshots
  redis-vps-backup metrics INSTANCE     the status as Prometheus metrics for node_exporter's
                                        textfile collector, when it is installed (root)
  redis-vps-backup restore INSTANCE [--snapshot NAME] [--offsite] [--check-only]
                                        (root; the admin password on stdin)
  redis-vps-backup restic-key add INSTANCE
                                        (root; playbooks/rotate.yml -e redis_rotate=restic, phase 1)
                                        a key for the new repository password (on stdin) beside the
                                        one in force, then the host's files switch to the new one
  redis-vps-backup restic-key retire INSTANCE
                                        (root; phase 2) the old key removed, once the password in
                                        force is proven to open the repository with its own key

Exit status: 0 done, 1 failed, 2 refused before anything changed.
"""

import argparse
import contextlib
import datetime
import errno
import fcntl
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

LIB_DIR = "/usr/local/lib/redis-vps"       # the collection's redis_resp.py, installed by the role
sys.path.insert(0, LIB_DIR)
from redis_resp import RedisError, RespConnection, databases  # noqa: E402

CONFIG_DIR = "/etc/redis-vps-backup"
# The host's credential store (README, "Passwords"): restic's copy of the password in force and,
# while a rotation is in progress, restic.retiring with the ID of the old password's key.
STORE = "/etc/redis-vps/credentials"
SUFFIX = ".rdb.gz"
NAME = re.compile(r"^(?P<instance>[a-z0-9_-]+)-(?P<stamp>\d{8}T\d{6}Z)$")
STAMP = "%Y%m%dT%H%M%SZ"
CHUNK = 1 << 20
DROP_IN = "zz-redis-vps-restore.conf"

# The newest RDB format each engine release reads (and writes): a snapshot above it
# is refused before anything changes. Redis 7.0 -> 10, 7.2 -> 11, 7.4 and 8.x -> 12;
# Valkey 7.2 to 8.1 -> 11 (it reads no Redis 7.4+ file).
RDB_VERSIONS = {
    "redis": [((7, 4), 12), ((7, 2), 11), ((7, 0), 10), ((6, 0), 9)],
    "valkey": [((7, 2), 11)],
}


class Refused(Exception):
    """Nothing was changed: the request cannot be carried out as asked."""


class Failed(Exception):
    """Something went wrong while carrying it out."""


def log(message):
    print(message, file=sys.stderr, flush=True)


# --- Names, versions, retention (pure functions, unit-tested) ---------------------------

def snapshot_name(instance, timestamp):
    return "%s-%s" % (instance, datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime(STAMP))


def snapshot_time(name):
    match = NAME.match(name)
    if not match:
        return None
    return datetime.datetime.strptime(match.group("stamp"), STAMP).replace(tzinfo=datetime.timezone.utc).timestamp()


def rdb_version(header):
    """The format version in an RDB file's first 9 bytes (b'REDIS0011' -> 11), or None."""
    if len(header) < 9 or header[:5] != b"REDIS" or not header[5:9].isdigit():
        return None
    return int(header[5:9])


def max_rdb_version(engine, version):
    """The newest RDB format that `engine` at `version` ('7.0.15') reads, or None when unknown."""
    try:
        have = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    for since, rdb in RDB_VERSIONS.get(engine, []):
        if have >= since:
            return rdb
    return None


def server_version(text):
    """('redis', '7.0.15') from `redis-server --version` ('Redis server v=7.0.15 sha=...')."""
    match = re.search(r"^(\w+) server v=(\S+)", text.strip())
    if not match:
        return None, None
    return match.group(1).lower(), match.group(2)


def keep(names, hourly, daily):
    """The snapshots to keep: the newest one of each of the last `hourly` hours that have one,
    and of the last `daily` days (UTC), and always the newest snapshot."""
    dated = sorted(((snapshot_time(n), n) for n in names if snapshot_time(n) is not None), reverse=True)
    kept = set()
    for count, width in ((hourly, 3600), (daily, 86400)):
        seen = set()
        for when, name in dated:
            if len(seen) >= count:
                break
            bucket = int(when // width)
            if bucket not in seen:
                seen.add(bucket)
                kept.add(name)
    if dated:
        kept.add(dated[0][1])
    return kept


def parse_check_rdb(output):
    """Figures from redis-check-rdb's report: keys read, keys with a TTL, already expired."""
    figures = {}
    for key, pattern in (("keys", r"(\d+) keys read"), ("expires", r"(\d+) expires"),
                         ("already_expired", r"(\d+) already expired")):
        match = re.search(pattern, output)
        figures[key] = int(match.group(1)) if match else None
    return figures


def sftp_command(repository, key, known_hosts):
    """restic's sftp.command for an sftp: repository, with our key and known hosts only
    (sftp:user@host:/path, sftp:host:path, sftp://user@host:port//path)."""
    match = re.match(r"^sftp://(?P<dest>[^/:]+)(:(?P<port>\d+))?/", repository) \
        or re.match(r"^sftp:(?P<dest>[^/:]+):", repository)
    if not match:
        raise Refused("cannot read the SFTP repository %r (sftp:user@host:/path or sftp://user@host:port//path)"
                      % repository)
    parts = ["ssh", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known_hosts,
             "-o", "ServerAliveInterval=15"]
    if match.groupdict().get("port"):
        parts += ["-p", match.group("port")]
    return " ".join(shlex.quote(p) for p in parts + [match.group("dest"), "-s", "sftp"])


def load_env_file(path):
    """KEY=value lines (systemd EnvironmentFile= syntax, values maybe double-quoted)."""
    env = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return env
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        env[key.strip()] = value
    return env


# --- Redis over the unix socket -------------------------------------------------------
# The collection's one RESP client (plugins/module_utils/redis_resp.py), which the role installs
# beside this program: the same code the modules use.

def key_count(info):
    return sum(databases(info).values())


def connect(config, user, password, timeout=10):
    try:
        conn = RespConnection(config["socket"], timeout)
    except OSError as exc:
        raise Failed("cannot reach %s on %s: %s" % (config["instance"], config["socket"], exc))
    try:
        conn.auth(user, password)
    except RedisError as exc:
        conn.close()
        raise Failed("%s refused user %s: %s" % (config["instance"], user, exc))
    return conn


# --- Files ----------------------------------------------------------------------------

def secret(name):
    """A secret's path: systemd's credential when the unit passed one, else the root-only file."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if folder and os.path.exists(os.path.join(folder, name)):
        return os.path.join(folder, name)
    return os.path.join(CONFIG_DIR, name)


def read_secret(name):
    with open(secret(name), encoding="utf-8") as handle:
        return handle.read().strip()


def write_atomic(path, text, mode):
    """`text` into `path` by a file written beside, synced and renamed: readers see the old
    file or the new one, never half of one; nothing is left behind when the write fails
    (a full disk)."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, data):
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o644)


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return default


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(config, wait):
    """One backup or restore of an instance at a time."""
    path = os.path.join(config["dest"], ".lock")
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)    # flock needs no write access
    if os.geteuid() == 0:        # a restore, as root: the service's user must open it too
        st = os.stat(config["dest"])
        os.fchown(fd, st.st_uid, st.st_gid)
    with os.fdopen(fd) as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Failed("another backup or restore of %s is running (%s)" % (config["instance"], path))
                time.sleep(1)
        yield


def local_snapshots(config):
    """Names of the local snapshots, oldest first."""
    names = []
    for entry in os.listdir(config["dest"]):
        if entry.endswith(SUFFIX) and NAME.match(entry[:-len(SUFFIX)]):
            names.append(entry[:-len(SUFFIX)])
    return sorted(names, key=snapshot_time)


def check_rdb(config, path, fds=()):
    """The engine's own redis-check-rdb (valkey-check-rdb) on a file: format, every object,
    the CRC64 at the end. Returns its figures; raises Refused with its words."""
    done = subprocess.run([config["check_rdb"], path], capture_output=True, pass_fds=fds, timeout=3600, check=False)
    output = (done.stdout + done.stderr).decode(errors="replace")     # a damaged file's bytes may show
    if done.returncode != 0 or "RDB looks OK" not in output:
        last = [line for line in output.splitlines() if line.strip()][-3:]
        raise Refused("%s says the snapshot is not sound: %s" % (os.path.basename(config["check_rdb"]), " / ".join(last)))
    return parse_check_rdb(output)


def engine_limit(config):
    """(engine, version, newest RDB version it reads) of the installed server."""
    done = subprocess.run([config["server_bin"], "--version"], capture_output=True, text=True, errors="replace",
                          check=False)
    engine, version = server_version(done.stdout)
    return engine, version, max_rdb_version(engine or config["engine"], version or "")


def check_version(config, header):
    version = rdb_version(header)
    if version is None:
        raise Refused("not an RDB file (its header is %r)" % header[:9])
    engine, release, newest = engine_limit(config)
    if newest is not None and version > newest:
        raise Refused("the snapshot is RDB version %d, but %s %s reads RDB up to version %d: it cannot load it"
                      % (version, engine, release, newest))
    return version


# --- restic ---------------------------------------------------------------------------

def restic_env(config, password_file=None):
    offsite = config["offsite"]
    env = dict(os.environ)
    env.update(load_env_file(os.path.join(CONFIG_DIR, "restic.env")) if "CREDENTIALS_DIRECTORY" not in os.environ else {})
    env["RESTIC_REPOSITORY"] = offsite["repository"]
    env["RESTIC_PASSWORD_FILE"] = password_file or secret("restic-password")
    env.setdefault("HOME", "/nonexistent")
    return env


def restic(config, *args, stdin=None, stdout=None, check=True, password_file=None):
    """Run restic on the instance's repository; its password and keys never on a command line
    (`password_file`: another password's file than the one in force)."""
    offsite = config["offsite"]
    cmd = ["restic", "--quiet"]
    cache = os.environ.get("CACHE_DIRECTORY")
    cmd += ["--cache-dir", cache] if cache else ["--no-cache"]
    if offsite["repository"].startswith("sftp:"):
        cmd += ["-o", "sftp.command=" + sftp_command(offsite["repository"], secret("ssh-key"), secret("known_hosts"))]
    cmd += list(args)
    done = subprocess.run(cmd, env=restic_env(config, password_file), stdin=stdin, stdout=stdout or subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=offsite.get("timeout", 3600), check=False)
    if check and done.returncode != 0:
        raise Failed("restic %s: %s" % (args[0], (done.stderr or b"").decode(errors="replace").strip()[-500:]))
    return done


def restic_ready(config):
    """Make the repository on first use."""
    done = restic(config, "cat", "config", check=False)
    if done.returncode == 0:
        return
    words = done.stderr.decode(errors="replace")
    if re.search(r"does not exist|Is there a repository|unable to open config file", words):
        log("initialising the off-site repository %s" % config["offsite"]["repository"])
        restic(config, "init")
        return
    raise Failed("restic cannot open %s: %s" % (config["offsite"]["repository"], words.strip()[-500:]))


def offsite_snapshots(config):
    """restic's snapshots of this host's instance, oldest first."""
    done = restic(config, "snapshots", "--json", "--host", config["offsite"]["host"], "--tag", config["instance"])
    return json.loads(done.stdout.decode() or "[]") or []


def offsite_copy(config, rdb_fd, status):
    offsite = config["offsite"]
    restic_ready(config)
    os.lseek(rdb_fd, 0, os.SEEK_SET)
    with os.fdopen(os.dup(rdb_fd), "rb") as source:
        restic(config, "backup", "--stdin", "--stdin-filename", config["instance"] + ".rdb",
               "--host", offsite["host"], "--tag", "redis-vps", "--tag", config["instance"], stdin=source)
    restic(config, "forget", "--prune", "--host", offsite["host"], "--tag", config["instance"],
           "--keep-hourly", str(config["keep_hourly"]), "--keep-daily", str(config["keep_daily"]), "--keep-last", "1")
    latest = offsite_snapshots(config)[-1]
    status["offsite"].update(last_success=int(time.time()), snapshot=latest["short_id"], last_error=None)
    checked = status["offsite"].get("last_check") or 0
    if time.time() - checked >= offsite.get("check_days", 7) * 86400:
        log("checking the off-site repository (restic check)")
        restic(config, "check")
        status["offsite"]["last_check"] = int(time.time())


# --- restic keys: the repository password's rotation (playbooks/rotate.yml) -------------
# Every key of a restic repository opens the same master key: a key added for the new
# password reads every snapshot taken before, and removing the old key leaves them all.

WRONG_PASSWORD = re.compile(r"wrong password|no key found")
NO_REPOSITORY = re.compile(r"does not exist|Is there a repository|unable to open config file")


class NoRepository(Failed):
    """The repository is not made yet (the first backup makes it)."""


def current_key(keys):
    """(ID of the key the password opened, every key's ID) from `restic key list --json`."""
    current = [k["id"] for k in keys if k.get("current")]
    if len(current) != 1:
        raise Failed("restic key list names %d current keys" % len(current))
    return current[0], [k["id"] for k in keys]


def same_key(a, b):
    """restic names a key by its ID or a prefix of it (key list --json: 8 characters in 0.14)."""
    return bool(a and b) and (a.startswith(b) or b.startswith(a))


def full_key_id(config, short):
    """The whole ID (64 hex digits) of the key that `short` names."""
    found = [k for k in restic(config, "list", "keys").stdout.decode().split() if same_key(k, short)]
    if len(found) != 1:
        raise Failed("restic list keys: %d keys match %s" % (len(found), short))
    return found[0]


def restic_keys(config, password_file=None):
    """The repository's keys as the password in `password_file` (default: the one in force)
    opens it, or None when no key has that password. Any other failure raises."""
    done = restic(config, "key", "list", "--json", check=False, password_file=password_file)
    if done.returncode != 0:
        words = done.stderr.decode(errors="replace")
        if WRONG_PASSWORD.search(words):
            return None
        if NO_REPOSITORY.search(words):
            raise NoRepository(words.strip()[-500:])
        raise Failed("restic key list: %s" % words.strip()[-500:])
    return current_key(json.loads(done.stdout.decode() or "[]"))


@contextlib.contextmanager
def password_file(password):
    """The password in a root-only file of its own (restic reads a new password from a file
    only), removed afterwards."""
    fd, path = tempfile.mkstemp(prefix=".restic-new-", dir=CONFIG_DIR)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def retiring_path():
    return os.path.join(STORE, "restic.retiring")


def key_add(config, new_password):
    """Phase 1: a key for `new_password` beside the one in force, proven to open the repository,
    then the host's files switch to it; restic.retiring keeps the old key's ID for phase 2.
    A rerun after a failure adds no second key."""
    if not config.get("offsite"):
        raise Refused("no off-site repository is configured for %s" % config["instance"])
    if not new_password or new_password != new_password.strip() or "\n" in new_password:
        raise Refused("the new repository password (stdin) is empty or has white space around it")
    if os.path.exists(retiring_path()):
        raise Refused("a rotation of the repository password is in progress (%s): retire it first" % retiring_path())
    with locked(config, wait=600):
        try:
            old = restic_keys(config)
        except NoRepository:
            # No snapshot to keep readable: the first backup makes the repository with the new one.
            write_atomic(os.path.join(CONFIG_DIR, "restic-password"), new_password + "\n", 0o600)
            write_atomic(os.path.join(STORE, "restic"), new_password + "\n", 0o600)
            return {"changed": True, "added": False, "old_key": None, "new_key": None}
        if old is None:
            raise Failed("the repository does not open with the password in force (%s): nothing changed"
                         % secret("restic-password"))
        with password_file(new_password) as new_file:
            new = restic_keys(config, new_file)
            added = new is None
            if added:
                log("adding a key for the new password to the off-site repository")
                restic(config, "key", "add", "--new-password-file", new_file)
                new = restic_keys(config, new_file)
                if new is None:
                    raise Failed("the key just added does not open the repository")
        if same_key(new[0], old[0]):
            raise Refused("the new repository password is the one in force")
        write_atomic(retiring_path(), full_key_id(config, old[0]) + "\n", 0o600)
        write_atomic(os.path.join(CONFIG_DIR, "restic-password"), new_password + "\n", 0o600)
        write_atomic(os.path.join(STORE, "restic"), new_password + "\n", 0o600)
    return {"changed": True, "added": added, "old_key": old[0][:8], "new_key": new[0][:8]}


def key_retire(config):
    """Phase 2: the old key (restic.retiring) removed, only once the password in force opens the
    repository with a key of its own."""
    if not config.get("offsite"):
        raise Refused("no off-site repository is configured for %s" % config["instance"])
    try:
        with open(retiring_path(), encoding="utf-8") as handle:
            old = handle.read().strip()
    except FileNotFoundError:
        raise Refused("no rotation of the repository password is in progress (no %s)" % retiring_path())
    with locked(config, wait=600):
        keys = restic_keys(config)
        if keys is None:
            raise Failed("the password in force (%s) does not open the repository: the old key stays"
                         % secret("restic-password"))
        if same_key(keys[0], old):
            raise Refused("the password in force still opens the repository with the old key %s: it stays" % old[:8])
        removed = any(same_key(k, old) for k in keys[1])
        if removed:
            log("removing the old key %s from the off-site repository" % old[:8])
            restic(config, "key", "remove", old)
            after = restic_keys(config)
            if after is None or any(same_key(k, old) for k in after[1]):
                raise Failed("the old key %s is still in the repository" % old[:8])
        os.unlink(retiring_path())
    return {"changed": True, "removed": old[:8] if removed else None, "key": keys[0][:8]}


# --- backup ---------------------------------------------------------------------------

# Room a backup-only filesystem keeps beyond the snapshot (the status file, a checksum).
DEST_SLACK = 1 << 20
MB = 1024 * 1024


def child_active(info):
    """Whether the server runs a child that blocks a BGSAVE now: an AOF rewrite (or a
    module's fork). Read from INFO persistence, never from an error's wording: Redis 7/8 and
    Valkey answer "Another child process is active (AOF?): can't BGSAVE right now"."""
    return info.get("aof_rewrite_in_progress") == "1" or info.get("module_fork_in_progress") == "1"


def room_problem(estimate, data_free, dest_free, same_fs, min_free, rdb_written):
    """Why a backup of about `estimate` bytes (the RDB; its .gz is at most about as big) must
    not go on, or None. The filesystem of the instance's data (its AOF) must keep, after
    everything the backup writes there, room for one AOF rewrite (a base about the snapshot's
    size) plus `min_free`: a backup must never push the queue into refusing writes. Before the
    snapshot (`rdb_written` false) the server writes a second RDB beside dump.rdb; the
    compressed copy lands there too when the backups share that filesystem (`same_fs`)."""
    reserve = estimate + min_free
    need = reserve + (0 if rdb_written else estimate) + (estimate if same_fs else 0)
    if data_free < need:
        return ("no room: the snapshot (about %.1f MB) would leave the filesystem of the instance's data (its AOF) "
                "with %.1f MB free, less than the %.1f MB it keeps (one AOF rewrite plus redis_backup_min_free_mb "
                "%.0f MB); free some space or move %s" % (
                    estimate / MB, (data_free - need + reserve) / MB, reserve / MB, min_free / MB,
                    "the backups to another filesystem" if same_fs else "the data"))
    if not same_fs and dest_free < estimate + DEST_SLACK:
        return ("no room: the backups' filesystem has %.1f MB free, the snapshot needs about %.1f MB"
                % (dest_free / MB, (estimate + DEST_SLACK) / MB))
    return None


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_room(config, estimate, rdb_written):
    """Refused (nothing written) when the snapshot would not fit, or would leave the AOF's
    filesystem short of room (room_problem)."""
    data, dest = config["data_dir"], config["dest"]
    same_fs = os.stat(data).st_dev == os.stat(dest).st_dev
    problem = room_problem(estimate, free_bytes(data), free_bytes(dest), same_fs,
                           int(config.get("min_free_bytes", 256 * MB)), rdb_written)
    if problem:
        raise NoRoom(problem)


class NoRoom(Refused):
    """Refused before anything was written: the snapshot does not fit, or would leave the
    AOF short of room."""


class RanOutOfRoom(Failed):
    """The disk filled while the copy was written (whatever was written of it is removed)."""


def wait_for_snapshot(conn, before, deadline, scheduled):
    """Wait until the server's snapshot after `before` (LASTSAVE) is written; its LASTSAVE.
    Judged by the server's state: a scheduled BGSAVE starts once the AOF rewrite ends; a
    failure counts only while no child runs and, for a scheduled one, after a grace period
    (the server starts it within a cron tick)."""
    idle_polls = 0
    while True:
        info = conn.info("persistence")
        lastsave = int(conn.call("LASTSAVE"))
        busy = info.get("rdb_bgsave_in_progress") == "1" or child_active(info)
        if not busy and lastsave > before and info.get("rdb_last_bgsave_status") == "ok":
            return lastsave
        if busy:
            idle_polls = 0
        else:
            idle_polls += 1
            if info.get("rdb_last_bgsave_status") != "ok" and idle_polls >= (25 if scheduled else 3):
                raise Failed("the snapshot failed (rdb_last_bgsave_status:%s); see the instance's log"
                             % info.get("rdb_last_bgsave_status"))
            if idle_polls >= 150:      # 30 s with no child and no new save: the schedule was lost
                raise Failed("the server started no snapshot (LASTSAVE still %d)" % lastsave)
        if time.monotonic() > deadline:
            raise Failed("no new snapshot in time (LASTSAVE still %d)" % lastsave)
        time.sleep(0.2)


def ask_snapshot(conn, config):
    """BGSAVE, or BGSAVE SCHEDULE while an AOF rewrite runs (INFO says so); returns once
    the snapshot is written."""
    deadline = time.monotonic() + config.get("wait_seconds", 600)
    while conn.info("persistence").get("rdb_bgsave_in_progress") == "1":   # the server's own save first
        if time.monotonic() > deadline:
            raise Failed("a snapshot of the server's own is still running")
        time.sleep(0.2)
    before = int(conn.call("LASTSAVE"))
    while time.time() < before + 1:      # LASTSAVE counts seconds: ours must be a later one
        time.sleep(0.1)
    scheduled = child_active(conn.info("persistence"))
    if scheduled:
        reply = conn.call("BGSAVE", "SCHEDULE")
    else:
        try:
            reply = conn.call("BGSAVE")
        except RedisError as exc:
            # A rewrite may have started between INFO and BGSAVE: the state decides, not the text.
            info = conn.info("persistence")
            if not child_active(info):
                raise Failed("BGSAVE: %s" % exc)
            scheduled = True
            reply = conn.call("BGSAVE", "SCHEDULE")
    log("%s: %s" % (config["instance"], reply))
    return wait_for_snapshot(conn, before, deadline, scheduled)


def compress(source_fd, tmp):
    """gzip the open RDB into `tmp` (synced); sha256 of the .gz. The caller renames it."""
    os.lseek(source_fd, 0, os.SEEK_SET)
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as packed:
            while True:
                block = os.read(source_fd, CHUNK)
                if not block:
                    break
                packed.write(block)
        raw.flush()
        os.fsync(raw.fileno())
    os.chmod(tmp, 0o600)
    return sha256_of(tmp)


def keep_snapshot(config, fd, target):
    """The snapshot as `target` (.rdb.gz) with its checksum: the .gz is written under a hidden
    .partial name, its checksum file written atomically, and only then the .gz renamed into
    place, so a listed snapshot always has its checksum. On any failure (a full disk) nothing
    of it is left."""
    partial = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".partial")
    try:
        digest = compress(fd, partial)
        write_atomic(target + ".sha256", "%s  %s\n" % (digest, os.path.basename(target)), 0o600)
        os.replace(partial, target)
    except BaseException as exc:
        for path in (partial, target + ".sha256"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RanOutOfRoom("no room: writing %s ran out of space (%s); nothing of it was kept" % (target, exc))
        raise
    return digest


def clean_leftovers(config):
    """What a killed run left (it held the lock, which we hold now): partial files, temporary
    status or checksum files, a restore's staging file, a checksum without its snapshot."""
    for entry in os.listdir(config["dest"]):
        path = os.path.join(config["dest"], entry)
        orphan = entry.endswith(SUFFIX + ".sha256") and not os.path.exists(path[:-len(".sha256")])
        if (entry.startswith(".") and entry.endswith((".partial", ".tmp"))) or entry == ".restore.rdb" or orphan:
            log("removing %s, left by an interrupted run" % path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def prune(config):
    names = local_snapshots(config)
    kept = keep(names, config["keep_hourly"], config["keep_daily"])
    for name in names:
        if name not in kept:
            for suffix in (SUFFIX, SUFFIX + ".sha256"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(config["dest"], name + suffix))
            log("removed %s (retention: %d hourly, %d daily)" % (name, config["keep_hourly"], config["keep_daily"]))


def dump_size(config):
    try:
        return os.stat(os.path.join(config["data_dir"], config["dbfilename"])).st_size
    except FileNotFoundError:
        return None


def backup(config):
    status_path = os.path.join(config["dest"], "status.json")
    status = read_json(status_path, {}) or {}
    status.setdefault("offsite", {})
    status.update(instance=config["instance"], last_attempt=int(time.time()),
                  keep_hourly=config["keep_hourly"], keep_daily=config["keep_daily"],
                  warn_after_seconds=config.get("warn_after_seconds"),
                  offsite_repository=(config.get("offsite") or {}).get("repository"))
    try:
        with locked(config, wait=600):
            clean_leftovers(config)
            conn = connect(config, "backup", read_secret("backup-password"))
            try:
                # Before anything is written: the last snapshot's size as the estimate (the
                # dataset's size in memory for the first one).
                estimate = dump_size(config)
                if estimate is None:
                    estimate = int(conn.info("memory").get("used_memory_dataset", "0"))
                check_room(config, estimate, rdb_written=False)
                lastsave = ask_snapshot(conn, config)
            finally:
                conn.close()
            name = snapshot_name(config["instance"], lastsave)
            fd = os.open(os.path.join(config["data_dir"], config["dbfilename"]), os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                check_room(config, size, rdb_written=True)       # the real size, before the copy
                version = check_version(config, os.pread(fd, 9, 0))
                figures = check_rdb(config, "/proc/self/fd/%d" % fd, fds=(fd,))
                target = os.path.join(config["dest"], name + SUFFIX)
                digest = keep_snapshot(config, fd, target)
                log("%s: kept %s (%d bytes, RDB v%d, %s keys), sha256 %s"
                    % (config["instance"], os.path.basename(target), size, version, figures["keys"], digest))
                status.update(last_success=lastsave, last_snapshot=name, last_size=size, last_keys=figures["keys"],
                              last_rdb_version=version, last_error=None, no_room=None)
                prune(config)
                status["local_snapshots"] = len(local_snapshots(config))
                if config.get("offsite"):
                    try:
                        offsite_copy(config, fd, status)
                        log("%s: off-site copy %s in %s" % (config["instance"], status["offsite"]["snapshot"],
                                                            config["offsite"]["repository"]))
                    except (Failed, Refused, OSError, subprocess.SubprocessError) as exc:
                        status["offsite"].update(last_error=str(exc), last_failure=int(time.time()))
                        raise Failed("off-site copy: %s" % exc)
            finally:
                os.close(fd)
    except (Failed, Refused, OSError, RedisError, subprocess.SubprocessError) as exc:
        status.update(last_error=str(exc), last_failure=int(time.time()),
                      no_room=str(exc) if isinstance(exc, (NoRoom, RanOutOfRoom)) else None)
        write_json(status_path, status)
        raise
    write_json(status_path, status)


# --- metrics --------------------------------------------------------------------------

TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"


def metrics_text(instance, status):
    """The status file as Prometheus text: the last good backup's time, whether the last run
    succeeded, and the last off-site copy's time."""
    label = '{redis_instance="%s"}' % instance
    success, failure = status.get("last_success"), status.get("last_failure")
    ok = 0 if failure and (not success or failure > success) else 1
    lines = [
        "# HELP redis_vps_backup_last_success_timestamp_seconds Time of the snapshot of the last good backup.",
        "# TYPE redis_vps_backup_last_success_timestamp_seconds gauge",
        "redis_vps_backup_last_success_timestamp_seconds%s %d" % (label, success or 0),
        "# HELP redis_vps_backup_last_run_success Whether the last backup run succeeded (1) or failed (0).",
        "# TYPE redis_vps_backup_last_run_success gauge",
        "redis_vps_backup_last_run_success%s %d" % (label, ok),
    ]
    lines += [
        "# HELP redis_vps_backup_no_room Whether the last backup run was refused for lack of room (1): the snapshot"
        " would not fit, or would leave the instance's AOF filesystem short.",
        "# TYPE redis_vps_backup_no_room gauge",
        "redis_vps_backup_no_room%s %d" % (label, 1 if status.get("no_room") else 0),
    ]
    offsite = (status.get("offsite") or {}).get("last_success")
    if status.get("offsite_repository"):
        lines += [
            "# HELP redis_vps_backup_offsite_last_success_timestamp_seconds Time of the last good off-site copy.",
            "# TYPE redis_vps_backup_offsite_last_success_timestamp_seconds gauge",
            "redis_vps_backup_offsite_last_success_timestamp_seconds%s %d" % (label, offsite or 0),
        ]
    return "\n".join(lines) + "\n"


def write_metrics(config):
    """Run after each backup (ExecStopPost, as root): only where node_exporter's textfile
    folder exists; written beside and renamed, as the collector wants."""
    if not os.path.isdir(TEXTFILE_DIR):
        return
    status = read_json(os.path.join(config["dest"], "status.json"), {}) or {}
    path = os.path.join(TEXTFILE_DIR, "redis_vps_backup_%s.prom" % config["instance"])
    write_atomic(path, metrics_text(config["instance"], status), 0o644)


# --- list -----------------------------------------------------------------------------

def listing(config):
    out = {"local": [], "offsite": None}
    for name in local_snapshots(config):
        path = os.path.join(config["dest"], name + SUFFIX)
        out["local"].append({"name": name, "time": int(snapshot_time(name)), "size": os.path.getsize(path)})
    if config.get("offsite"):
        out["offsite"] = [{"id": s["short_id"], "time": s["time"], "host": s["hostname"]}
                          for s in offsite_snapshots(config)]
    return out


# --- restore --------------------------------------------------------------------------

def stage(config, snapshot, offsite):
    """The snapshot asked for, uncompressed and checked, in a staging file; (name, path).
    Raises Refused before anything of the instance is touched."""
    staging = os.path.join(config["dest"], ".restore.rdb")
    if offsite:
        if not config.get("offsite"):
            raise Refused("no off-site repository is configured for %s" % config["instance"])
        snapshots = offsite_snapshots(config)
        if not snapshots:
            raise Refused("the off-site repository has no snapshot of %s from %s"
                          % (config["instance"], config["offsite"]["host"]))
        if snapshot:
            chosen = [s for s in snapshots if snapshot in (s["short_id"], s["id"])]
            if not chosen:
                raise Refused("no off-site snapshot %r of %s; there are: %s" % (
                    snapshot, config["instance"], ", ".join(s["short_id"] for s in snapshots[-10:])))
            chosen = chosen[0]
        else:
            chosen = snapshots[-1]
        with open(staging, "wb") as out:
            restic(config, "dump", chosen["id"], "/" + config["instance"] + ".rdb", stdout=out)
        name = "offsite:" + chosen["short_id"]
    else:
        names = local_snapshots(config)
        if not names:
            raise Refused("%s has no local snapshot in %s" % (config["instance"], config["dest"]))
        name = snapshot or names[-1]
        if name.endswith(SUFFIX):
            name = name[:-len(SUFFIX)]
        if name not in names:
            raise Refused("no snapshot %r of %s in %s; there are: %s" % (
                snapshot, config["instance"], config["dest"], ", ".join(names[-10:])))
        packed = os.path.join(config["dest"], name + SUFFIX)
        try:
            with open(packed + ".sha256", encoding="utf-8") as handle:
                want = handle.read().split()[0]
        except (FileNotFoundError, IndexError):
            raise Refused("%s has no checksum file" % packed)
        if sha256_of(packed) != want:
            raise Refused("%s does not match its checksum: the file is damaged" % packed)
        with open(packed, "rb") as handle:      # gzip's trailer: the uncompressed size (mod 4 GiB)
            handle.seek(-4, os.SEEK_END)
            size = int.from_bytes(handle.read(4), "little")
        same_fs = os.stat(config["data_dir"]).st_dev == os.stat(config["dest"]).st_dev
        need = size * (2 if same_fs else 1) + DEST_SLACK     # the staging file, then its copy in the data
        if free_bytes(config["dest"]) < need:
            raise NoRoom("no room to restore: %s needs about %.1f MB for the uncompressed snapshot, %.1f MB are free"
                         % (config["dest"], need / MB, free_bytes(config["dest"]) / MB))
        try:
            with gzip.open(packed, "rb") as source, open(staging, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
        except (OSError, EOFError) as exc:
            raise Refused("%s cannot be uncompressed: %s" % (packed, exc))
    with open(staging, "rb") as handle:
        version = check_version(config, handle.read(9))
    figures = check_rdb(config, staging)
    figures.update(rdb_version=version)
    return name, staging, figures


def systemctl(*args):
    done = subprocess.run(["systemctl"] + list(args), capture_output=True, text=True, errors="replace", check=False)
    if done.returncode != 0:
        raise Failed("systemctl %s: %s" % (" ".join(args), done.stderr.strip()))


def drop_in_path(config):
    return "/run/systemd/system/%s.d/%s" % (config["service"], DROP_IN)


def write_drop_in(config):
    """Start the instance once with appendonly off, so that it loads the RDB put back
    (with appendonly yes and no AOF, it would start empty and ignore the RDB)."""
    path = drop_in_path(config)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# redis-vps-backup restore: removed once the AOF is back (runtime only, gone at reboot)\n"
                     "[Service]\nExecStart=\nExecStart=%s --appendonly no\nTimeoutStartSec=30min\n"
                     % config["exec_start"])
    systemctl("daemon-reload")


def remove_drop_in(config):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(drop_in_path(config))
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(drop_in_path(config)))
    systemctl("daemon-reload")


def wait_loaded(config, password, deadline):
    while True:
        try:
            conn = connect(config, "admin", password)
            try:
                info = conn.info("persistence")
                if info.get("loading") == "0":
                    return conn
            except RedisError as exc:
                if "LOADING" not in str(exc):
                    raise
            conn.close()
        except Failed:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise Failed("%s did not finish loading in time" % config["instance"])
        time.sleep(0.2)


def aof_back_on(conn, config, deadline):
    """CONFIG SET appendonly yes, then wait for the AOF rewrite it starts to finish."""
    before = int(conn.info("persistence").get("aof_rewrites", "0"))
    conn.call("CONFIG", "SET", "appendonly", "yes")
    while True:
        info = conn.info("persistence")
        if (info.get("aof_rewrite_in_progress") == "0" and info.get("aof_rewrite_scheduled") == "0"
                and int(info.get("aof_rewrites", "0")) > before and info.get("aof_enabled") == "1"):
            if info.get("aof_last_bgrewrite_status") != "ok":
                raise Failed("the AOF rewrite after the restore failed; see the instance's log")
            return
        if time.monotonic() > deadline:
            raise Failed("the AOF rewrite did not finish in time")
        time.sleep(0.2)


def chown_like(path, reference):
    st = os.stat(reference)
    os.chown(path, st.st_uid, st.st_gid)


def restore(config, snapshot, offsite, check_only, password):
    if os.geteuid() != 0:
        raise Refused("a restore runs as root")
    started = time.monotonic()
    with locked(config, wait=60):
        try:
            name, staging, figures = stage(config, snapshot, offsite)
            result = dict(instance=config["instance"], snapshot=name, **figures)
            if check_only:
                result["checked_only"] = True
                return result
            conn = connect(config, "admin", password)      # the password works before anything moves
            try:
                result["keys_before"] = key_count(conn.info("keyspace"))
            finally:
                conn.close()
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime(STAMP)
            data = config["data_dir"].rstrip("/")
            aside = "%s.before-restore-%s" % (data, stamp)
            log("%s: stopping %s, keeping its data in %s" % (config["instance"], config["service"], aside))
            systemctl("stop", config["service"])
            os.rename(data, aside)
            try:
                os.mkdir(data, 0o700)
                chown_like(data, aside)
                target = os.path.join(data, config["dbfilename"])
                shutil.copyfile(staging, target)
                chown_like(target, aside)
                os.chmod(target, 0o600)
                write_drop_in(config)
                systemctl("start", config["service"])
                deadline = time.monotonic() + config.get("wait_seconds", 600)
                conn = wait_loaded(config, password, deadline)
                try:
                    loaded = key_count(conn.info("keyspace"))
                    low = (figures["keys"] or 0) - (figures["expires"] or 0)
                    high = (figures["keys"] or 0) - (figures["already_expired"] or 0)
                    if not low <= loaded <= high:
                        raise Failed("%s loaded %d keys, the snapshot has %s (%s with a TTL)"
                                     % (config["instance"], loaded, figures["keys"], figures["expires"]))
                    log("%s: %d keys loaded from %s; turning the AOF back on" % (config["instance"], loaded, name))
                    aof_back_on(conn, config, deadline)
                    result.update(keys_after=key_count(conn.info("keyspace")),
                                  run_id=conn.info("server").get("run_id"),
                                  replid=conn.info("replication").get("master_replid"))
                finally:
                    conn.close()
                remove_drop_in(config)
            except BaseException as exc:
                log("%s: the restore failed (%s); putting the previous data back" % (config["instance"], exc))
                subprocess.run(["systemctl", "stop", config["service"]], capture_output=True, check=False)
                remove_drop_in(config)
                if os.path.exists(data):
                    os.rename(data, "%s.failed-restore-%s" % (data, stamp))
                os.rename(aside, data)
                subprocess.run(["systemctl", "start", config["service"]], capture_output=True, check=False)
                raise
            result.update(kept_aside=aside, seconds=round(time.monotonic() - started, 1))
            return result
        finally:        # the staging file never outlives the run, whatever happened
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(config["dest"], ".restore.rdb"))


# --- command line ---------------------------------------------------------------------

def load_config(instance):
    path = os.path.join(CONFIG_DIR, instance + ".json")
    config = read_json(path)
    if config is None:
        raise Refused("%s has no backups configured (no %s): only an instance with persistence is backed up"
                      % (instance, path))
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(prog="redis-vps-backup", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup").add_argument("instance")
    sub.add_parser("list").add_argument("instance")
    sub.add_parser("metrics").add_argument("instance")
    rest = sub.add_parser("restore")
    rest.add_argument("instance")
    rest.add_argument("--snapshot", default="")
    rest.add_argument("--offsite", action="store_true")
    rest.add_argument("--check-only", action="store_true")
    key = sub.add_parser("restic-key")
    key.add_argument("action", choices=["add", "retire"])
    key.add_argument("instance")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.instance)
        if args.command == "backup":
            backup(config)
        elif args.command == "metrics":
            write_metrics(config)
        elif args.command == "list":
            print(json.dumps(listing(config), indent=2))
        elif args.command == "restic-key":
            done = key_add(config, sys.stdin.readline().rstrip("\n")) if args.action == "add" else key_retire(config)
            print(json.dumps(done))
        else:
            password = "" if args.check_only else sys.stdin.readline().rstrip("\n")
            print(json.dumps(restore(config, args.snapshot, args.offsite, args.check_only, password), indent=2))
    except Refused as exc:
        log("refused: %s" % exc)
        return 2
    except (Failed, OSError, RedisError, subprocess.SubprocessError) as exc:
        log("failed: %s" % exc)
        return 1
    except Exception as exc:     # noqa: BLE001 - said in one line, then the details for a bug report
        log("failed: unexpected %s: %s" % (type(exc).__name__, exc))
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
