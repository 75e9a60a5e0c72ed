"""plugins/modules/redis_backup_setup.py, run whole on a temporary folder: files and folders
written by the collection's one file writer only where they differ (byte for byte), with
their owner and mode from the start; the timers' states read by the one systemd reader
(systemctl faked: the real one is tested in molecule/backup); nothing in check mode;
secret contents never in the module's log line."""
import grp
import json
import os
import pwd
import stat

import pytest
from ansible.module_utils import basic

from ansible_collections.redis_vps.server.plugins.module_utils import files
from ansible_collections.redis_vps.server.plugins.modules import redis_backup_setup as mod

SECRET = "S3cretBackupPassw0rd"


def me():
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


class Systemctl:
    """A stand-in for systemctl: `show` answers with the states given, other calls are recorded."""

    def __init__(self, states=None, show_rc=0):
        self.states, self.show_rc, self.calls = states or {}, show_rc, []

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        if argv[:2] == ["systemctl", "show"]:
            if self.show_rc:
                return self.show_rc, "", "Failed to connect to bus\n"
            units = [word for word in argv[2:] if not word.startswith("--")]
            return 0, "\n\n".join("Id=%s\nActiveState=%s\nUnitFileState=%s\n" % ((unit,) + self.states[unit])
                                  for unit in units), ""
        return 0, "", ""

    def actions(self):
        return [argv[1:] for argv in self.calls if argv[1] != "show"]


def run(monkeypatch, capsys, args, systemctl=None, check_mode=False):
    """The module's result (its JSON on stdout), with its log lines."""
    args = dict(args, _ansible_check_mode=check_mode)
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    logged = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: logged.append(msg))
    systemctl = systemctl or Systemctl()
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, argv, **kwargs: systemctl(argv, **kwargs))
    with pytest.raises(SystemExit):
        mod.main()
    result = json.loads(capsys.readouterr().out)
    result["logged"] = logged
    return result


def secret_file(tmp_path, content=SECRET + "\n", mode="0600"):
    user, group = me()
    return {"path": str(tmp_path / "backup-password"), "content": content, "owner": user, "group": group, "mode": mode}


def test_a_file_is_written_when_it_differs_and_left_alone_when_not(monkeypatch, capsys, tmp_path):
    spec = secret_file(tmp_path)
    path = tmp_path / "backup-password"
    out = run(monkeypatch, capsys, {"files": [spec]})
    assert out["changed"] and out["written"] == [str(path)] and not out.get("failed")
    assert path.read_text() == SECRET + "\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    out = run(monkeypatch, capsys, {"files": [spec]})
    assert not out["changed"] and out["written"] == []
    os.chmod(path, 0o644)
    out = run(monkeypatch, capsys, {"files": [spec]})
    assert out["changed"] and out["written"] == [str(path)] and stat.S_IMODE(path.stat().st_mode) == 0o600
    out = run(monkeypatch, capsys, {"files": [dict(spec, content="other\n")]})
    assert out["changed"] and path.read_text() == "other\n"
    assert [p.name for p in tmp_path.iterdir()] == ["backup-password"]     # no temporary file left


@pytest.mark.parametrize("old", [b"pw\r\n", b"pw\xff\n"], ids=["crlf", "not-utf8"])
def test_a_file_is_compared_byte_for_byte(monkeypatch, capsys, tmp_path, old):
    """A password file with a Windows line end (read as text, it would equal "pw\\n") or bytes
    that are not UTF-8 (the text reader stops on them) is rewritten with the content asked."""
    path = tmp_path / "backup-password"
    path.write_bytes(old)
    os.chmod(path, 0o600)
    out = run(monkeypatch, capsys, {"files": [secret_file(tmp_path, content="pw\n")]})
    assert out["changed"] and out["written"] == [str(path)] and path.read_bytes() == b"pw\n"
    assert files.read(str(path), exact=True) == "pw\n"


def test_a_folder_is_made_with_its_parents_and_gets_its_mode(monkeypatch, capsys, tmp_path):
    user, group = me()
    queue = tmp_path / "backups" / "queue"
    spec = {"path": str(queue), "owner": user, "group": group, "mode": "0700"}
    out = run(monkeypatch, capsys, {"dirs": [spec]})
    assert out["changed"] and stat.S_IMODE(queue.stat().st_mode) == 0o700
    assert not run(monkeypatch, capsys, {"dirs": [spec]})["changed"]
    os.chmod(queue, 0o755)
    assert run(monkeypatch, capsys, {"dirs": [spec]})["changed"] and stat.S_IMODE(queue.stat().st_mode) == 0o700


def test_check_mode_writes_nothing(monkeypatch, capsys, tmp_path):
    user, group = me()
    old = tmp_path / "old"
    old.write_text("old\n")
    os.chmod(old, 0o644)
    args = {"dirs": [{"path": str(tmp_path / "d"), "owner": user, "group": group, "mode": "0700"}],
            "files": [secret_file(tmp_path / "d"), dict(secret_file(tmp_path), path=str(old), content="new\n")],
            "timers": ["redis-vps-backup@queue.timer"]}
    systemctl = Systemctl({"redis-vps-backup@queue.timer": ("inactive", "disabled")})
    out = run(monkeypatch, capsys, args, systemctl, check_mode=True)
    assert out["changed"] and out["written"] == [str(tmp_path / "d" / "backup-password"), str(old)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"] and old.read_text() == "old\n"
    assert stat.S_IMODE(old.stat().st_mode) == 0o644
    assert systemctl.actions() == []
    assert out["timers"] == {"redis-vps-backup@queue.timer": {"active": False, "enabled": False}}


def test_timers_are_started_or_stopped_only_where_they_are_not_so(monkeypatch, capsys):
    timers = ["redis-vps-backup@cache.timer", "redis-vps-backup@queue.timer"]
    systemctl = Systemctl({timers[0]: ("active", "enabled"), timers[1]: ("inactive", "disabled")})
    out = run(monkeypatch, capsys, {"timers": timers}, systemctl)
    assert out["changed"] and systemctl.actions() == [["enable", timers[1]], ["start", timers[1]]]
    assert [argv for argv in systemctl.calls if argv[1] == "show"] == [
        ["systemctl", "show", "--property=Id,ActiveState,UnitFileState"] + timers]     # one call for all
    assert out["timers"] == {timers[0]: {"active": True, "enabled": True}, timers[1]: {"active": False, "enabled": False}}
    systemctl = Systemctl({timers[0]: ("active", "enabled"), timers[1]: ("active", "enabled")})
    out = run(monkeypatch, capsys, {"timers": timers}, systemctl)
    assert not out["changed"] and systemctl.actions() == []
    systemctl = Systemctl({timers[0]: ("active", "enabled"), timers[1]: ("inactive", "disabled")})
    out = run(monkeypatch, capsys, {"timers": timers, "enabled": False}, systemctl)
    assert out["changed"] and systemctl.actions() == [["disable", "--now", timers[0]]]


def test_nothing_to_do_runs_no_systemctl(monkeypatch, capsys, tmp_path):
    spec = secret_file(tmp_path)
    run(monkeypatch, capsys, {"files": [spec]})
    systemctl = Systemctl()
    out = run(monkeypatch, capsys, {"files": [spec]}, systemctl)
    assert not out["changed"] and systemctl.calls == []


def test_failures_name_what_failed_and_show_no_secret(monkeypatch, capsys, tmp_path):
    out = run(monkeypatch, capsys, {"files": [dict(secret_file(tmp_path), owner="no-such-user-here")]})
    assert out["failed"] and str(tmp_path / "backup-password") in out["msg"] and "no-such-user-here" in out["msg"]
    assert SECRET not in json.dumps(out) and not (tmp_path / "backup-password").exists()
    out = run(monkeypatch, capsys, {"timers": ["redis-vps-backup@queue.timer"]}, Systemctl(show_rc=1))
    assert out["failed"] and "systemctl show redis-vps-backup@queue.timer: Failed to connect to bus" in out["msg"]


def test_a_secret_content_is_not_in_the_modules_log_line(monkeypatch, capsys, tmp_path):
    out = run(monkeypatch, capsys, {"files": [secret_file(tmp_path, content="a\n%s\nb\n" % SECRET)]})
    assert out["changed"] and out["logged"] and all(SECRET not in line for line in out["logged"])
    assert SECRET not in json.dumps(out)
