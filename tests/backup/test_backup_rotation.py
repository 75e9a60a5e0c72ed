"""The backup user's password rotated under a running writer (issue 17, Done when), on every host of
molecule/backup at once: during each phase of `playbooks/rotate.yml -e redis_rotate=backup` a client
writes steadily into the queue (tests/backup/writer.py, in rounds until the phase is over) and no
write fails or is lost, nothing restarts, and a backup right after the phase works with the password
then in force; the old one works until phase 2 and not after it."""
import json
import pathlib

import pytest
import testinfra
from helpers import (INVENTORY, REPO, Redis, RedisCommandError, credentials_of, instances_of, limited_to, narrowed, playbook,
                     put_file, put_program)
from test_backup import ok

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

ROTATE = REPO / "playbooks" / "rotate.yml"
WRITER = "/usr/local/lib/bkp_writer.py"
WORK = "/root/bkp-rotation"


class Vps:
    def __init__(self, host):
        self.host = host
        self.hostvars = host.ansible.get_variables()
        self.instances = instances_of(self.hostvars)
        self.redis = Redis(host, credentials_of(self.hostvars), self.instances)
        self.queue = self.instances["queue"]

    def run_ids(self):
        return {name: self.redis.info(name, "server")["run_id"] for name in ("cache", "queue")}

    def start_writer(self):
        """Rounds of 5 s of writes (500 SETs a second) until WORK/stop appears; each round's JSON line
        and exit code go to WORK/rounds (the password from a root-only file, on no command line)."""
        put_program(self.host, WRITER, pathlib.Path(__file__).parent / "writer.py")   # with redis_resp.py beside it
        put_file(self.host, WORK + "/pw", self.redis.credentials["queue"] + "\n", mode="0600")
        self.host.run_test("rm -f %s/stop %s/done %s/rounds" % (WORK, WORK, WORK))
        self.host.run_test(
            "nohup sh -c 'while [ ! -f %s/stop ]; do python3 %s %s 5 500 < %s/pw > %s/round 2>&1; "
            "echo \"$? $(tail -1 %s/round | cut -c1-200)\" >> %s/rounds; done; touch %s/done' > /dev/null 2>&1 &"
            % (WORK, WRITER, self.queue["config"]["unixsocket"], WORK, WORK, WORK, WORK, WORK))

    def stop_writer(self):
        self.host.run_test("touch %s/stop; for i in $(seq 60); do [ -f %s/done ] && break; sleep 0.5; done" % (WORK, WORK))
        assert self.host.file(WORK + "/done").exists, "the writer did not stop"
        rounds = []
        for line in self.host.file(WORK + "/rounds").content_string.splitlines():
            rc, _, report = line.partition(" ")
            assert rc == "0", "a round of writes failed: %s" % report
            # (the JSON line is cut: acked and lost come first)
            rounds.append({key.strip('"'): int(value) for key, value in
                           (part.split(": ") for part in report.strip("{").split(", ")[:2])})
        return rounds

    def backup(self):
        """A backup now (the unit the timer starts), and the status it leaves."""
        self.host.run_test("systemctl start %s" % self.queue["backup"]["service"])
        return json.loads(self.host.file(self.queue["backup"]["status_file"]).content_string)

    def backup_login(self, password):
        try:
            return self.redis.run("queue", "PING", user="backup", password=password) == "PONG"
        except RedisCommandError:
            return False


@pytest.fixture(scope="module")
def every_vps():
    """The hosts of helpers.RERUN_PLATFORMS (a rotation is no fault of issue 20's), to which the
    module's playbook() runs are limited."""
    hosts = testinfra.get_hosts(["ansible://redis_servers"], ansible_inventory=INVENTORY)
    names = narrowed([host.backend.get_hostname() for host in hosts])
    with limited_to(names):
        yield [Vps(host) for host in hosts if host.backend.get_hostname() in names]


def under_writer(every_vps, *args):
    for vps in every_vps:
        vps.start_writer()
    try:
        out = ok(*playbook(*args, path=ROTATE))
    finally:
        rounds = {vps: vps.stop_writer() for vps in every_vps}
    for vps, done in rounds.items():
        assert done and sum(r["acked"] for r in done) > 1000, (vps.hostvars["inventory_hostname"], done)
        assert all(r["lost"] == 0 for r in done), (vps.hostvars["inventory_hostname"], done)
    return out


def test_backup_rotates_under_a_writer_losing_nothing_and_restarting_nothing(every_vps):
    old = {vps: vps.redis.credentials["backup"] for vps in every_vps}
    before = {vps: vps.run_ids() for vps in every_vps}
    try:
        out = under_writer(every_vps, "-e", "redis_rotate=backup")
        for vps in every_vps:
            new = credentials_of(vps.hostvars)["backup"]
            assert new != old[vps] and new not in out and old[vps] not in out
            assert vps.host.run("cat /etc/redis-vps-backup/backup-password").stdout.strip() == new
            assert vps.backup_login(old[vps]) and vps.backup_login(new)
            assert vps.backup()["last_error"] is None
            assert vps.run_ids() == before[vps], "an instance was restarted"

        under_writer(every_vps, "-e", "redis_rotate=backup", "-e", "redis_rotate_retire=true")
        for vps in every_vps:
            new = credentials_of(vps.hostvars)["backup"]
            assert not vps.backup_login(old[vps]) and vps.backup_login(new)
            assert vps.backup()["last_error"] is None
            assert vps.run_ids() == before[vps], "an instance was restarted"
            assert not vps.host.file("/etc/redis-vps/credentials/backup.retiring").exists
    finally:
        for vps in every_vps:
            vps.redis.credentials.update(credentials_of(vps.hostvars))
