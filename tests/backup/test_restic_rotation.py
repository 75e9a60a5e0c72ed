"""The off-site restic repository's password rotated in two phases (issue 17, playbooks/rotate.yml
-e redis_rotate=restic), on every host of molecule/backup at once: phase 1 adds a key for the new
password, the host and the controller switch to it, a new backup works and a snapshot from before
restores with it; phase 2 removes the old key, after which the old password opens nothing and the
old snapshots still restore. Nothing restarts, a site.yml rerun after each phase changes nothing,
no password reaches the playbook output, and bad input is refused before any change."""
import concurrent.futures
import json
import pathlib
import re
import shlex

import pytest
import testinfra
from helpers import INVENTORY, REPO, Redis, changed_count, credentials_of, instances_of, limited_to, narrowed, playbook
from test_backup import ok

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

ROTATE = REPO / "playbooks" / "rotate.yml"
BACKUP = REPO / "playbooks" / "backup.yml"
RESTORE = REPO / "playbooks" / "restore.yml"
ETC = "/etc/redis-vps-backup"
STORE = "/etc/redis-vps/credentials"
PROBE = "/root/restic-probe-password"


class Vps:
    def __init__(self, host):
        self.host = host
        self.hostvars = host.ansible.get_variables()
        self.name = self.hostvars["inventory_hostname"]
        self.instances = instances_of(self.hostvars)
        self.redis = Redis(host, credentials_of(self.hostvars), self.instances)
        self.config = json.loads(host.file(ETC + "/queue.json").content_string)

    def controller_password(self):
        path = pathlib.Path(self.hostvars["redis_credentials_dir"]) / self.name / "redis_backup_restic_password"
        return path.read_text().strip()

    def in_force(self):
        return self.host.file(ETC + "/restic-password").content_string.strip()

    def restic(self, password, *args, stdin_from=""):
        """restic on the host's repository with `password` (from a root-only file, never on the command
        line), as the backup program runs it, reading the output of `stdin_from` if given: (rc, stdout, stderr)."""
        self.host.run_test("install -m 0600 /dev/null %s" % PROBE)
        self.host.run_test("cat > %s <<'EOF'\n%s\nEOF" % (PROBE, password))
        repo = self.config["offsite"]["repository"]
        ssh = ("ssh -i %s/ssh-key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
               "-o UserKnownHostsFile=%s/known_hosts %s -s sftp" % (ETC, ETC, repo.split(":")[1]))
        try:
            done = self.host.run(("%s | " % stdin_from if stdin_from else "") + "RESTIC_REPOSITORY=%s RESTIC_PASSWORD_FILE=%s restic --no-cache -o %s %s" % (
                shlex.quote(repo), PROBE, shlex.quote("sftp.command=" + ssh), " ".join(map(shlex.quote, args))))
        finally:
            self.host.run("rm -f %s" % PROBE)
        return done.rc, done.stdout, done.stderr

    def keys(self, password):
        """The repository's key IDs as `password` opens it, the current one first; None when it opens nothing."""
        rc, out, err = self.restic(password, "key", "list", "--json")
        if rc != 0:
            assert re.search(r"wrong password|no key found", err), err[-500:]
            return None
        keys = json.loads(out)
        return [k["id"] for k in keys if k["current"]] + [k["id"] for k in keys if not k["current"]]

    def backdated(self, password):
        """The newest local snapshot copied off-site as a backup of yesterday, with `password`: retention
        (one a day for 7 days) keeps it through the later backups of this test, so it can be restored after
        each phase. Its short ID."""
        newest = self.host.run("ls -1 %s/*.rdb.gz | tail -1" % self.config["dest"]).stdout.strip()
        yesterday = self.host.run("date -u -d yesterday '+%Y-%m-%d %H:%M:%S'").stdout.strip()
        rc, _, err = self.restic(password, "backup", "--quiet", "--stdin", "--stdin-filename", "queue.rdb",
                                 "--host", self.config["offsite"]["host"], "--tag", "redis-vps", "--tag", "queue",
                                 "--time", yesterday, stdin_from="gunzip -c " + shlex.quote(newest))
        assert rc == 0, err[-500:]
        return [s["id"] for s in self.offsite() if s["time"].startswith(yesterday[:10])][-1]

    def offsite(self):
        done = self.host.run("/usr/local/sbin/redis-vps-backup list queue")
        assert done.rc == 0, done.stderr
        return json.loads(done.stdout)["offsite"]

    def run_ids(self):
        return {name: self.redis.info(name, "server")["run_id"] for name in ("cache", "queue")}

    def files(self):
        """What a refused run must not move: the repository password's files and the store's names."""
        return (self.host.run("sha256sum %s/restic-password %s/restic" % (ETC, STORE)).stdout,
                self.host.run("ls %s" % STORE).stdout)


@pytest.fixture(scope="module")
def every_vps():
    """The hosts of helpers.RERUN_PLATFORMS (a rotation is no fault of issue 20's), to which the
    module's playbook() runs are limited."""
    hosts = testinfra.get_hosts(["ansible://redis_servers"], ansible_inventory=INVENTORY)
    names = narrowed([host.backend.get_hostname() for host in hosts])
    with limited_to(names):
        yield [Vps(host) for host in hosts if host.backend.get_hostname() in names]


def secret_free(out, *passwords):
    for password in passwords:
        assert password not in out, "a repository password is in the playbook's output"
    return out


@pytest.mark.parametrize("args, message", [
    (["-e", "redis_rotate=restic", "-e", "redis_rotate_retire=true"],
     r"redis_rotate_retire: no rotation of restic is in progress"),
    (["-e", "redis_rotate=restic", "-e", "redis_backup_offsite_repository="],
     r"redis_backup_offsite_repository is empty on \S+: it has no off-site repository"),
], ids=["retire-without-rotation", "no-offsite-repository"])
def test_bad_restic_rotation_input_is_refused_before_any_change(every_vps, args, message):
    before = [vps.files() for vps in every_vps]
    rc, out = playbook(*args, path=ROTATE)
    assert rc != 0 and re.search(message, out), out[-3000:]
    assert "Check the input before anything changes" in out.split("fatal:")[0].rsplit("PLAY [", 1)[-1]
    assert [vps.files() for vps in every_vps] == before


def test_a_new_repository_password_outside_a_rotation_is_refused(every_vps, tmp_path):
    """Given anew in the inventory, site.yml would write it over the one the repository opens with."""
    before = [vps.files() for vps in every_vps]
    new = "Another-restic-password-0123456789"
    rc, out = playbook(extra_vars={"redis_backup_restic_password": new}, tmp_path=tmp_path)
    assert rc != 0 and re.search(r"redis_backup_restic_password: the password this controller has for \S+'s "
                                 r"off-site repository \(in the inventory\) is not the one", out), out[-3000:]
    assert "Check the input before anything changes" in out.split("fatal:")[0].rsplit("PLAY [", 1)[-1]
    assert [vps.files() for vps in every_vps] == before
    secret_free(out, *[vps.in_force() for vps in every_vps])


def restore_each(every_vps, snapshots, tmp_path):
    """Each host's queue back from its off-site snapshot taken before the rotation: one run per host
    (each its own snapshot), side by side."""
    for vps in every_vps:
        vps.redis.run("queue", "SET", "rr:marker", "changed since", user="default")
    with concurrent.futures.ThreadPoolExecutor(len(every_vps)) as pool:
        runs = {vps.name: pool.submit(playbook, "-e", "redis_restore_offsite=true", "-e", "redis_restore_snapshot=" + snapshots[vps.name],
                                      path=RESTORE, limit=vps.name) for vps in every_vps}
    for vps in every_vps:
        out = ok(*runs[vps.name].result())
        assert "keys back from offsite:%s" % snapshots[vps.name] in out, out[-3000:]
        assert vps.redis.run("queue", "GET", "rr:marker", user="default") == "before " + vps.name


def test_restic_rotation_in_two_phases_keeps_every_snapshot_readable(every_vps, tmp_path):
    old = {vps.name: vps.in_force() for vps in every_vps}
    for vps in every_vps:
        assert vps.controller_password() == old[vps.name]
        vps.redis.run("queue", "SET", "rr:marker", "before " + vps.name, user="default")
    ok(*playbook(path=BACKUP, tmp_path=tmp_path))
    snapshots = {vps.name: vps.backdated(old[vps.name]) for vps in every_vps}
    old_keys = {vps.name: vps.keys(old[vps.name]) for vps in every_vps}
    run_ids = {vps.name: vps.run_ids() for vps in every_vps}

    # Phase 1: a second key; the host, its store and the controller use the new password.
    out = ok(*playbook("-e", "redis_rotate=restic", path=ROTATE))
    new = {}
    for vps in every_vps:
        new[vps.name] = vps.controller_password()
        assert new[vps.name] != old[vps.name] and len(new[vps.name]) == 48
        assert vps.in_force() == new[vps.name]
        assert vps.host.file(STORE + "/restic").content_string.strip() == new[vps.name]
        retiring = vps.host.file(STORE + "/restic.retiring")
        assert (retiring.user, retiring.mode) == ("root", 0o600)
        # The old key's whole ID, kept for phase 2 (restic 0.14's key list shows its first 8 characters).
        assert re.fullmatch(r"[0-9a-f]{64}", retiring.content_string.strip())
        assert retiring.content_string.strip().startswith(old_keys[vps.name][0])
        both = vps.keys(new[vps.name])
        assert both is not None and len(both) == len(old_keys[vps.name]) + 1
        assert vps.keys(old[vps.name])[0] == old_keys[vps.name][0], "the old password opens its key until phase 2"
        assert vps.run_ids() == run_ids[vps.name], "an instance restarted"
    secret_free(out, *old.values(), *new.values())
    rerun = secret_free(ok(*playbook()), *old.values(), *new.values())
    assert changed_count(rerun) == 0, rerun[-3000:]

    # A new backup works with the new password; the snapshot from before restores with it.
    ok(*playbook(path=BACKUP, tmp_path=tmp_path))
    for vps in every_vps:
        assert snapshots[vps.name] in [s["id"] for s in vps.offsite()]
        assert vps.offsite()[-1]["id"] != snapshots[vps.name]
    restore_each(every_vps, snapshots, tmp_path)
    run_ids = {vps.name: vps.run_ids() for vps in every_vps}     # a restore restarts the queue

    # Phase 2: the old key goes; the old password opens nothing, the new one still does.
    out = ok(*playbook("-e", "redis_rotate=restic", "-e", "redis_rotate_retire=true", path=ROTATE))
    for vps in every_vps:
        assert vps.keys(old[vps.name]) is None, "the old password still opens the repository"
        keys = vps.keys(new[vps.name])
        assert keys is not None and old_keys[vps.name][0] not in keys and len(keys) == len(old_keys[vps.name])
        assert snapshots[vps.name] in [s["id"] for s in vps.offsite()], "a snapshot from before is gone"
        assert not vps.host.file(STORE + "/restic.retiring").exists
        assert vps.in_force() == new[vps.name] == vps.controller_password()
        assert vps.run_ids() == run_ids[vps.name], "an instance restarted"
    secret_free(out, *old.values(), *new.values())
    rerun = secret_free(ok(*playbook()), *old.values(), *new.values())
    assert changed_count(rerun) == 0, rerun[-3000:]

    # Every snapshot from before the rotation still restores, with the new password only.
    restore_each(every_vps, snapshots, tmp_path)
    ok(*playbook(path=BACKUP, tmp_path=tmp_path))
