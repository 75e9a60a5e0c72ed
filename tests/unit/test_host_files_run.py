"""plugins/modules/host_files.py, run whole on a temporary folder: files and folders
written by the collection's one file writer only where they differ (byte for byte), with
their owner and mode from the start; units started, stopped or masked only where they are
not so, their states read by the one systemd reader (systemctl faked: the real one is tested
in molecule/default and molecule/backup); nothing in check mode; secret contents never in
the module's log line."""
import grp
import json
import os
import pwd
import stat

import pytest
from ansible.module_utils import basic

from ansible_collections.redis_vps.server.plugins.module_utils import files
from ansible_collections.redis_vps.server.plugins.modules import host_files as mod

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
    """The arguments of one root-only file whose content is a secret (in `secrets`, never in `files`)."""
    user, group = me()
    path = str(tmp_path / "backup-password")
    return {"files": [{"path": path, "owner": user, "group": group, "mode": mode}], "secrets": {path: content}}


def plain_file(path, content):
    user, group = me()
    return {"path": str(path), "content": content, "owner": user, "group": group, "mode": "0644"}


def test_a_file_is_written_when_it_differs_and_left_alone_when_not(monkeypatch, capsys, tmp_path):
    args = secret_file(tmp_path)
    path = tmp_path / "backup-password"
    out = run(monkeypatch, capsys, args)
    assert out["changed"] and out["written"] == [str(path)] and not out.get("failed")
    assert path.read_text() == SECRET + "\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    out = run(monkeypatch, capsys, args)
    assert not out["changed"] and out["written"] == []
    os.chmod(path, 0o644)
    out = run(monkeypatch, capsys, args)      # its mode set, its content left (`written` lists contents written)
    assert out["changed"] and out["written"] == [] and stat.S_IMODE(path.stat().st_mode) == 0o600
    out = run(monkeypatch, capsys, secret_file(tmp_path, content="other\n"))
    assert out["changed"] and path.read_text() == "other\n"
    assert [p.name for p in tmp_path.iterdir()] == ["backup-password"]     # no temporary file left


@pytest.mark.parametrize("old", [b"pw\r\n", b"pw\xff\n"], ids=["crlf", "not-utf8"])
def test_a_file_is_compared_byte_for_byte(monkeypatch, capsys, tmp_path, old):
    """A password file with a Windows line end (read as text, it would equal "pw\\n") or bytes
    that are not UTF-8 (the text reader stops on them) is rewritten with the content asked."""
    path = tmp_path / "backup-password"
    path.write_bytes(old)
    os.chmod(path, 0o600)
    out = run(monkeypatch, capsys, secret_file(tmp_path, content="pw\n"))
    assert out["changed"] and out["written"] == [str(path)] and path.read_bytes() == b"pw\n"
    assert files.read(str(path), exact=True) == "pw\n"


def test_a_folder_is_made_with_its_parents_and_gets_its_mode(monkeypatch, capsys, tmp_path):
    user, group = me()
    queue = tmp_path / "backups" / "queue"
    spec = {"path": str(queue), "owner": user, "group": group, "mode": "0700"}
    out = run(monkeypatch, capsys, {"dirs": [spec]})
    assert out["changed"] and out["dirs"] == [str(queue)] and stat.S_IMODE(queue.stat().st_mode) == 0o700
    assert not run(monkeypatch, capsys, {"dirs": [spec]})["changed"]
    os.chmod(queue, 0o755)
    assert run(monkeypatch, capsys, {"dirs": [spec]})["changed"] and stat.S_IMODE(queue.stat().st_mode) == 0o700


def test_check_mode_writes_nothing(monkeypatch, capsys, tmp_path):
    user, group = me()
    old = tmp_path / "old"
    old.write_text("old\n")
    os.chmod(old, 0o644)
    monkeypatch.setattr(mod, "MASK_DIR", str(tmp_path))
    secret = secret_file(tmp_path / "d")
    args = {"dirs": [{"path": str(tmp_path / "d"), "owner": user, "group": group, "mode": "0700"}],
            "files": secret["files"] + [plain_file(old, "new\n")], "secrets": secret["secrets"],
            "units": [{"name": "redis-vps-backup@queue.timer"}, {"name": "x.service", "state": "masked"}]}
    systemctl = Systemctl({"redis-vps-backup@queue.timer": ("inactive", "disabled"), "x.service": ("active", "enabled")})
    out = run(monkeypatch, capsys, args, systemctl, check_mode=True)
    assert out["changed"] and out["written"] == [str(tmp_path / "d" / "backup-password"), str(old)]
    assert out["dirs"] == [str(tmp_path / "d")] and out["masked"] == ["x.service"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"] and old.read_text() == "old\n"
    assert stat.S_IMODE(old.stat().st_mode) == 0o644
    assert systemctl.actions() == []
    assert out["units"]["redis-vps-backup@queue.timer"]["started"] and out["units"]["x.service"]["stopped"]


def test_timers_are_started_stopped_or_restarted_only_where_they_are_not_so(monkeypatch, capsys, tmp_path):
    timers = ["redis-vps-backup@cache.timer", "redis-vps-backup@queue.timer"]
    systemctl = Systemctl({timers[0]: ("active", "enabled"), timers[1]: ("inactive", "disabled")})
    out = run(monkeypatch, capsys, {"units": [{"name": t} for t in timers]}, systemctl)
    assert out["changed"] and systemctl.actions() == [["enable", timers[1]], ["start", timers[1]]]
    # Several units to start: one systemctl call, systemd starts them side by side.
    systemctl = Systemctl({timers[0]: ("inactive", "disabled"), timers[1]: ("inactive", "disabled")})
    run(monkeypatch, capsys, {"units": [{"name": t} for t in timers]}, systemctl)
    assert systemctl.actions() == [["enable"] + timers, ["start"] + timers]
    assert [argv for argv in systemctl.calls if argv[1] == "show"] == [
        ["systemctl", "show", "--property=Id,ActiveState,UnitFileState"] + timers]     # one call for all
    systemctl = Systemctl({timers[0]: ("active", "enabled"), timers[1]: ("active", "enabled")})
    out = run(monkeypatch, capsys, {"units": [{"name": t} for t in timers]}, systemctl)
    assert not out["changed"] and systemctl.actions() == []
    systemctl = Systemctl({timers[0]: ("active", "enabled"), timers[1]: ("inactive", "disabled")})
    out = run(monkeypatch, capsys, {"units": [{"name": t, "state": "stopped"} for t in timers]}, systemctl)
    assert out["changed"] and systemctl.actions() == [["disable", "--now", timers[0]]]
    assert out["units"][timers[0]]["stopped"] and not out["units"][timers[1]]["stopped"]
    # A changed unit file restarts the running timer that it notifies (a new schedule applies).
    monkeypatch.setattr(mod, "MASK_DIR", str(tmp_path))
    unit = dict(plain_file(tmp_path / "redis-vps-backup@.timer", "[Timer]\n"), notify=timers)
    systemctl = Systemctl({timers[0]: ("active", "enabled"), timers[1]: ("inactive", "enabled")})
    out = run(monkeypatch, capsys, {"files": [unit], "units": [{"name": t, "on_change": "restart"} for t in timers]}, systemctl)
    assert systemctl.actions() == [["daemon-reload"], ["start", timers[1]], ["restart", timers[0]]]


def test_a_unit_is_masked_before_its_package_is_there_and_a_file_of_the_admin_is_left_alone(monkeypatch, capsys, tmp_path):
    """A link to /dev/null where nothing is there; systemd reloads only for a unit it has (its
    package installed), and a running one is stopped."""
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir()
    lib.mkdir()
    monkeypatch.setattr(mod, "MASK_DIR", str(etc))
    monkeypatch.setattr(mod, "PACKAGE_UNIT_DIRS", (str(lib),))
    (etc / "mine.service").write_text("[Service]\n")
    units = [{"name": "redis-server.service", "state": "masked"}, {"name": "mine.service", "state": "masked"}]
    systemctl = Systemctl({"redis-server.service": ("inactive", ""), "mine.service": ("inactive", "enabled")})
    out = run(monkeypatch, capsys, {"units": units}, systemctl)
    assert out["changed"] and out["masked"] == ["redis-server.service"] and systemctl.actions() == []
    assert os.readlink(etc / "redis-server.service") == "/dev/null" and (etc / "mine.service").read_text() == "[Service]\n"
    assert not run(monkeypatch, capsys, {"units": units}, systemctl)["changed"]
    # Installed and running already: masked, systemd reloaded, the unit stopped.
    os.unlink(etc / "redis-server.service")
    (lib / "redis-server.service").write_text("[Service]\n")
    systemctl = Systemctl({"redis-server.service": ("active", "enabled"), "mine.service": ("inactive", "enabled")})
    out = run(monkeypatch, capsys, {"units": units}, systemctl)
    assert systemctl.actions() == [["daemon-reload"], ["stop", "redis-server.service"]]
    assert out["units"]["redis-server.service"]["masked_now"] and out["units"]["redis-server.service"]["stopped"]


def test_nothing_to_do_runs_no_systemctl(monkeypatch, capsys, tmp_path):
    args = secret_file(tmp_path)
    run(monkeypatch, capsys, args)
    systemctl = Systemctl()
    out = run(monkeypatch, capsys, args, systemctl)
    assert not out["changed"] and systemctl.calls == []


def test_failures_name_what_failed_and_show_no_secret(monkeypatch, capsys, tmp_path):
    args = secret_file(tmp_path)
    args["files"][0]["owner"] = "no-such-user-here"
    out = run(monkeypatch, capsys, args)
    assert out["failed"] and str(tmp_path / "backup-password") in out["msg"] and "no-such-user-here" in out["msg"]
    assert SECRET not in json.dumps(out) and not (tmp_path / "backup-password").exists()
    out = run(monkeypatch, capsys, {"units": [{"name": "redis-vps-backup@queue.timer"}]}, Systemctl(show_rc=1))
    assert out["failed"] and "systemctl show redis-vps-backup@queue.timer: Failed to connect to bus" in out["msg"]


def test_a_secret_content_is_not_in_the_modules_log_line(monkeypatch, capsys, tmp_path):
    out = run(monkeypatch, capsys, secret_file(tmp_path, content="a\n%s\nb\n" % SECRET))
    assert out["changed"] and out["logged"] and all(SECRET not in line for line in out["logged"])
    assert SECRET not in json.dumps(out)


def test_a_file_of_an_earlier_release_is_removed_where_it_is_there(monkeypatch, capsys, tmp_path):
    old = tmp_path / "50-redis-vps-hardening.conf"
    old.write_text("PasswordAuthentication no\n")
    out = run(monkeypatch, capsys, {"absent": [str(old)]}, check_mode=True)
    assert out["changed"] and out["removed"] == [str(old)] and old.exists()
    out = run(monkeypatch, capsys, {"absent": [str(old)]})
    assert out["changed"] and out["removed"] == [str(old)] and not old.exists()
    assert not run(monkeypatch, capsys, {"absent": [str(old)]})["changed"]


def test_systemd_reloads_when_asked_before_the_units_are_read(monkeypatch, capsys):
    """The instances' drop-ins are written by another module run: systemd reloads them first,
    then the units found stopped are started (one run)."""
    systemctl = Systemctl({"redis-server@cache.service": ("inactive", "disabled")})
    out = run(monkeypatch, capsys, {"daemon_reload": True, "units": [{"name": "redis-server@cache.service"}]}, systemctl)
    assert out["changed"] and out["daemon_reload"]
    assert [argv[1:] for argv in systemctl.calls] == [
        ["daemon-reload"], ["show", "--property=Id,ActiveState,UnitFileState", "redis-server@cache.service"],
        ["enable", "redis-server@cache.service"], ["start", "redis-server@cache.service"]]
