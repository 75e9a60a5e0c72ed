"""plugins/module_utils/records.py and the host_files action plugin: a host_files run given
`record` leaves a record of what it put in place; redis_host's read says which records the
host still holds; the action skips a module run only where its options' digest is the
record's and the host still holds it. Real files in a temporary folder; systemctl and the
probes faked (the real ones: tests/rerun/test_records.py on molecule's hosts)."""
import os
import stat

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.redis_vps.server.plugins.action.host_files import held
from ansible_collections.redis_vps.server.plugins.module_utils import records

from test_host_files_run import SECRET, Systemctl, me, plain_file, run


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Where the module writes its records here (/var/lib/redis-vps/host_files on a host)."""
    path = tmp_path / "records" / "host_files"
    monkeypatch.setattr(records, "FOLDER", str(path))
    return path


def task_args(tmp_path, content="a = 1\n"):
    user, group = me()
    (tmp_path / "d").mkdir(exist_ok=True)
    return {"dirs": [{"path": str(tmp_path / "d"), "owner": user, "group": group, "mode": "0750"}],
            "files": [plain_file(tmp_path / "a.conf", content),
                      {"path": str(tmp_path / "secret"), "owner": user, "group": group, "mode": "0600"}],
            "secrets": {str(tmp_path / "secret"): SECRET + "\n"},
            "absent": [str(tmp_path / "old.conf")],
            "units": [{"name": "x.service"}, {"name": "y.timer", "state": "stopped"}],
            "record": "demo"}


UNITS = {"x.service": ("active", "enabled"), "y.timer": ("inactive", "disabled")}


def read_back(folder, units=None, run_command=None):
    systemctl = Systemctl(units or UNITS)
    return records.holding(run_command or systemctl, str(folder))


def test_a_run_records_what_it_put_in_place_root_only_and_the_read_finds_it_held(monkeypatch, capsys, tmp_path, folder):
    args = task_args(tmp_path)
    out = run(monkeypatch, capsys, args, Systemctl(UNITS))
    assert out["changed"] and not out.get("failed"), out
    path = folder / "demo.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert SECRET not in path.read_text(), "a record keeps digests, never a secret"
    held_now, moved = read_back(folder)
    assert moved == {} and list(held_now) == ["demo"]
    # The controller's digest of the same task options is the recorded one: the action skips the run.
    assert held(dict(args, recorded=held_now))
    # A second run changes nothing and leaves the record as it was (bookkeeping is no change).
    before = path.stat().st_mtime_ns
    out = run(monkeypatch, capsys, args, Systemctl(UNITS))
    assert not out["changed"] and path.stat().st_mtime_ns == before


@pytest.mark.parametrize("drift, why", [
    (lambda t: (t / "a.conf").write_text("a = 2\n"), "a.conf is not as written"),
    (lambda t: os.chmod(t / "secret", 0o644), "secret is not as written"),
    (lambda t: os.chmod(t / "d", 0o755), "is not as made"),
    (lambda t: (t / "old.conf").write_text("back\n"), "old.conf is there again"),
    (lambda t: os.unlink(t / "a.conf"), "a.conf is not as written"),
], ids=["content", "mode", "folder", "absent", "deleted"])
def test_whatever_moved_since_the_run_breaks_its_record(monkeypatch, capsys, tmp_path, folder, drift, why):
    args = task_args(tmp_path)
    run(monkeypatch, capsys, args, Systemctl(UNITS))
    drift(tmp_path)
    held_now, moved = read_back(folder)
    assert held_now == {} and why in moved["demo"]
    assert not held(dict(args, recorded=held_now))


@pytest.mark.parametrize("units, why", [
    ({"x.service": ("inactive", "enabled"), "y.timer": ("inactive", "disabled")}, "x.service is not running"),
    ({"x.service": ("active", "disabled"), "y.timer": ("inactive", "disabled")}, "x.service is not running"),
    ({"x.service": ("active", "enabled"), "y.timer": ("active", "disabled")}, "y.timer is not stopped"),
    ({"x.service": ("active", "enabled"), "y.timer": ("inactive", "enabled")}, "y.timer is not stopped"),
], ids=["stopped", "disabled", "started", "enabled"])
def test_a_unit_not_in_its_wanted_state_breaks_the_record(monkeypatch, capsys, tmp_path, folder, units, why):
    run(monkeypatch, capsys, task_args(tmp_path), Systemctl(UNITS))
    assert read_back(folder, units) == ({}, {"demo": why})


def test_a_masked_unit_holds_while_its_link_is_there_and_it_does_not_run(tmp_path):
    link = tmp_path / "z.service"
    record = dict(records.snapshot(records_params(units=[unit("z.service", state="masked")]), {}, {}))
    record["units"] = [["z.service", "masked", True, True]]

    def differs(active, there):
        lexists = lambda path: there  # noqa: E731
        return records.difference(record, {"z.service": {"ActiveState": active}}, None, lexists=lexists)
    assert differs("inactive", True) is None
    assert differs("active", True) == "z.service is not masked"
    assert differs("inactive", False) == "z.service is not masked"
    assert not link.exists()


def records_params(**given):
    return ArgumentSpecValidator(records.ARGUMENT_SPEC).validate(dict(given, record="t")).validated_parameters


def unit(name, **spec):
    return dict(dict(name=name, state="running", enabled=True, started=True, on_change="reload", reload=False, check=[]),
                **spec)


def test_a_kernel_value_changed_since_breaks_the_record_and_one_the_kernel_refused_holds(tmp_path):
    sysfs = tmp_path / "enabled"
    sysfs.write_text("always madvise [never]\n")
    params = records_params(sysfs={str(sysfs): "never"})
    record = records.snapshot(params, {}, {})
    assert records.difference(record, {}, None) is None
    sysfs.write_text("[always] madvise never\n")
    assert records.difference(record, {}, None) == "%s is not never" % sysfs
    # In a container the value cannot be written: the record keeps the one in force, which holds.
    record = records.snapshot(params, {}, {})
    assert record["kernel"] == {str(sysfs): "always"} and records.difference(record, {}, None) is None


def test_a_probe_that_says_something_else_now_breaks_the_record():
    params = records_params(probes=[{"name": "sshd", "argv": ["sshd", "-T"]}])
    record = records.snapshot(params, {}, {"sshd": {"rc": 0, "stdout": "passwordauthentication no\n"}})
    said = {"now": "passwordauthentication no\n"}

    def run_command(argv):
        assert argv == ["sshd", "-T"]
        return 0, said["now"], ""
    assert records.difference(record, {}, run_command) is None
    said["now"] = "passwordauthentication yes\n"
    assert records.difference(record, {}, run_command) == "sshd -T says something else now"


def test_a_group_membership_lost_breaks_the_record():
    user, group = me()
    record = records.snapshot(records_params(user_groups=[{"user": user, "group": group}]), {}, {})
    assert records.difference(record, {}, None) is None
    record["groups"] = [[user, "no-such-group-here"]]
    assert "no user" in records.difference(record, {}, None)


def test_other_options_or_options_that_act_each_time_are_never_skipped(monkeypatch, capsys, tmp_path, folder):
    args = task_args(tmp_path)
    run(monkeypatch, capsys, args, Systemctl(UNITS))
    recorded, _ = read_back(folder)
    assert held(dict(args, recorded=recorded))
    assert not held(dict(task_args(tmp_path, content="a = 2\n"), recorded=recorded)), "another content"
    assert not held(dict(args, secrets={str(tmp_path / "secret"): "another\n"}, recorded=recorded)), "another secret"
    assert not held(dict(args, recorded={})) and not held(dict(args, record=None, recorded=recorded))
    assert not held(dict(args, record="other", recorded=recorded))
    forced = dict(args, units=[dict(args["units"][0], reload=True)] + args["units"][1:])
    assert not held(dict(forced, recorded={"demo": records.digest(records_params(**forced))}))
    assert not held(dict(args, daemon_reload=True, recorded={"demo": records.digest(records_params(**dict(args, daemon_reload=True)))}))


def test_no_record_in_check_mode_and_unreadable_or_foreign_records_are_not_held(monkeypatch, capsys, tmp_path, folder):
    run(monkeypatch, capsys, task_args(tmp_path), Systemctl(UNITS), check_mode=True)
    assert not folder.exists()
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{not json")
    (folder / "old.json").write_text('{"format": 0, "digest": "x"}')
    (folder / "Bad-Name.json").write_text('{"format": 1, "digest": "x"}')
    (folder / "partial.json").write_text('{"format": 1, "digest": "x"}')
    held_now, moved = read_back(folder)
    assert held_now == {} and list(moved) == ["partial"] and "cannot be read" in moved["partial"]


def test_a_bad_record_name_is_refused(monkeypatch, capsys, tmp_path, folder):
    out = run(monkeypatch, capsys, dict(task_args(tmp_path), record="../etc"), Systemctl(UNITS))
    assert out["failed"] and "not a name" in out["msg"] and not (tmp_path / "etc.json").exists()
