"""The backup program's restic key rotation (redis-vps-backup restic-key add|retire, issue 17):
the refusals that leave every file as it was, and, where Debian's restic is installed on the
controller, the whole round on a real local repository (molecule/backup runs it on SFTP:
tests/backup/test_restic_rotation.py)."""
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import redis_vps_backup as prog

OLD = "old-restic-password-0123456789"
NEW = "new-restic-password-0123456789"
needs_restic = pytest.mark.skipif(not shutil.which("restic"), reason="restic is not installed here")


@pytest.fixture
def host(tmp_path, monkeypatch):
    """CONFIG_DIR, the store and the instance's folder in tmp_path, run as root would (no
    CREDENTIALS_DIRECTORY); the repository is a local folder, made when `init` is asked."""
    for sub in ("etc", "store", "dest"):
        (tmp_path / sub).mkdir()
    (tmp_path / "etc" / "restic-password").write_text(OLD + "\n")
    (tmp_path / "store" / "restic").write_text(OLD + "\n")
    config = {"instance": "queue", "dest": str(tmp_path / "dest"),
              "offsite": {"repository": str(tmp_path / "repo"), "host": "vps"}}
    (tmp_path / "etc" / "queue.json").write_text(json.dumps(config))
    monkeypatch.setattr(prog, "CONFIG_DIR", str(tmp_path / "etc"))
    monkeypatch.setattr(prog, "STORE", str(tmp_path / "store"))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    return tmp_path, config


def files(tmp):
    return {p.relative_to(tmp).as_posix(): p.read_text() for p in sorted(tmp.glob("[es]*/*")) if p.is_file()}


def rekey(action, stdin=""):
    """The command line's exit status, `stdin` given as Ansible's command module gives it."""
    saved, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        return prog.main(["restic-key", action, "queue"])
    finally:
        sys.stdin = saved


def test_current_key_is_the_one_restic_marks():
    keys = [{"current": False, "id": "39652b25"}, {"current": True, "id": "7c2a88da"}]
    assert prog.current_key(keys) == ("7c2a88da", ["39652b25", "7c2a88da"])
    with pytest.raises(prog.Failed):
        prog.current_key([{"current": False, "id": "39652b25"}])


def test_same_key_takes_a_prefix_for_the_whole_id():
    full = "7c2a88dae1390a2ede6b44b1427f74cf83c41fac49c5a015e051aa3bd1a59458"
    assert prog.same_key(full, "7c2a88da") and prog.same_key("7c2a88da", full)
    assert not prog.same_key(full, "39652b25") and not prog.same_key("", full)


@pytest.mark.parametrize("action, stdin, retiring, config_change", [
    ("add", NEW + "\n", None, {"offsite": None}),            # no off-site repository
    ("add", " %s\n" % NEW, None, {}),                        # white space around the new password
    ("add", "\n", None, {}),                                 # none at all
    ("add", NEW + "\n", "ab" * 32, {}),                      # a rotation is in progress
    ("retire", "", None, {}),                                # no rotation in progress
    ("retire", "", "ab" * 32, {"offsite": None}),
], ids=["no-offsite", "space", "empty", "in-progress", "retire-none", "retire-no-offsite"])
def test_a_refused_key_change_changes_no_file(host, action, stdin, retiring, config_change):
    tmp, config = host
    if retiring:
        (tmp / "store" / "restic.retiring").write_text(retiring + "\n")
    (tmp / "etc" / "queue.json").write_text(json.dumps(dict(config, **config_change)))
    before = files(tmp)
    assert rekey(action, stdin) == 2
    assert files(tmp) == before


def restic_opens(tmp, password):
    (tmp / "probe").write_text(password + "\n")
    done = subprocess.run(["restic", "--no-cache", "--quiet", "key", "list", "--json"], capture_output=True, text=True,
                          env=dict(os.environ, RESTIC_REPOSITORY=str(tmp / "repo"), RESTIC_PASSWORD_FILE=str(tmp / "probe")))
    return [k["id"] for k in json.loads(done.stdout)] if done.returncode == 0 else None


@needs_restic
def test_add_then_retire_on_a_real_repository(host, capsys):
    tmp, config = host
    prog.restic(config, "init")
    (tmp / "dump").write_bytes(b"REDIS0011 a snapshot")
    with open(tmp / "dump", "rb") as dump:
        prog.restic(config, "backup", "--stdin", "--stdin-filename", "queue.rdb", "--host", "vps", "--tag", "queue",
                    stdin=dump)
    old_keys = restic_opens(tmp, OLD)
    assert len(old_keys) == 1

    assert rekey("add", NEW + "\n") == 0
    done = json.loads(capsys.readouterr().out)
    assert done["added"] and done["old_key"] == old_keys[0][:8]
    assert (tmp / "etc" / "restic-password").read_text() == NEW + "\n" == (tmp / "store" / "restic").read_text()
    retiring = (tmp / "store" / "restic.retiring").read_text().strip()
    assert len(retiring) == 64 and retiring.startswith(old_keys[0])
    for path in ("etc/restic-password", "store/restic", "store/restic.retiring"):
        assert (tmp / path).stat().st_mode & 0o777 == 0o600, path
    assert len(restic_opens(tmp, NEW)) == 2 and restic_opens(tmp, OLD) is not None
    assert not list((tmp / "etc").glob(".restic-new-*")), "the new password's file is left behind"
    assert len(prog.offsite_snapshots(config)) == 1, "the snapshot from before does not open with the new password"

    # A second phase 1 while the first is not retired is refused.
    assert rekey("add", "yet-another-password-0123456789\n") == 2

    assert rekey("retire") == 0
    assert json.loads(capsys.readouterr().out)["removed"] == old_keys[0][:8]
    assert restic_opens(tmp, OLD) is None
    assert restic_opens(tmp, NEW) is not None and len(restic_opens(tmp, NEW)) == 1
    assert not (tmp / "store" / "restic.retiring").exists()
    assert len(prog.offsite_snapshots(config)) == 1


@needs_restic
def test_a_rerun_of_phase_one_after_a_failure_adds_no_second_key(host, capsys):
    """The key was added, then the run stopped before the files switched: the rerun finds the key."""
    tmp, config = host
    prog.restic(config, "init")
    (tmp / "new").write_text(NEW + "\n")
    prog.restic(config, "key", "add", "--new-password-file", str(tmp / "new"))
    assert rekey("add", NEW + "\n") == 0
    assert json.loads(capsys.readouterr().out)["added"] is False
    assert len(restic_opens(tmp, NEW)) == 2


@needs_restic
def test_retire_keeps_the_old_key_while_the_password_in_force_does_not_open_the_repository(host):
    tmp, config = host
    prog.restic(config, "init")
    (tmp / "store" / "restic.retiring").write_text(prog.full_key_id(config, restic_opens(tmp, OLD)[0]) + "\n")
    (tmp / "etc" / "restic-password").write_text("not-the-password-0123456789\n")
    before = files(tmp)
    assert rekey("retire") == 1
    assert files(tmp) == before and len(restic_opens(tmp, OLD)) == 1
    # ... and while the password in force is still the old one.
    (tmp / "etc" / "restic-password").write_text(OLD + "\n")
    assert rekey("retire") == 2 and len(restic_opens(tmp, OLD)) == 1


@needs_restic
def test_no_repository_yet_switches_the_files_without_a_key(host, capsys):
    tmp, _ = host
    assert rekey("add", NEW + "\n") == 0
    assert json.loads(capsys.readouterr().out)["added"] is False
    assert (tmp / "etc" / "restic-password").read_text() == NEW + "\n"
    assert not (tmp / "store" / "restic.retiring").exists()
