"""plugins/module_utils/files.py (the one file writer), systemd.py (the one unit-state
reader) and plugins/modules/host_files.py's kernel values: written only where they
differ, checked before replacing, nothing in check mode."""
import grp
import os
import pwd
import stat
import subprocess

import pytest
from ansible_collections.redis_vps.server.plugins.module_utils import files, records, systemd
from ansible_collections.redis_vps.server.plugins.modules import host_files as mod


def me():
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def run_command(argv):
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def test_a_file_is_written_when_it_differs_and_left_alone_when_not(tmp_path):
    user, group = me()
    path = str(tmp_path / "f.conf")
    out = files.sync(path, "a\n", user, group, "0600")
    assert out["changed"] and out["written"] and out["before"] is None
    assert open(path).read() == "a\n" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert files.sync(path, "a\n", user, group, "0600") == dict(changed=False, written=False, before="a\n", backup=None)
    os.chmod(path, 0o644)
    out = files.sync(path, "a\n", user, group, "0600")
    assert out["changed"] and not out["written"] and stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_check_mode_changes_nothing(tmp_path):
    user, group = me()
    path = tmp_path / "f.conf"
    path.write_text("old\n")
    out = files.sync(str(path), "new\n", user, group, "0644", check="/bin/false %s", check_mode=True)
    assert out["changed"] and out["written"] and path.read_text() == "old\n"


def test_content_the_check_refuses_is_not_written_nor_backed_up(tmp_path):
    user, group = me()
    path = tmp_path / "f.conf"
    path.write_text("good\n")
    copies = []
    with pytest.raises(files.CheckFailed, match="refused"):
        files.sync(str(path), "bad\n", user, group, "0644", check="/bin/sh -c 'grep -q good \"$1\" || { echo refused >&2; exit 1; }' x %s",
                   backup=copies.append, run_command=run_command)
    assert path.read_text() == "good\n" and copies == []
    assert sorted(os.listdir(tmp_path)) == ["f.conf"]   # no temporary file left
    out = files.sync(str(path), "good too\n", user, group, "0644", check="/bin/sh -c 'grep -q good \"$1\"' x %s",
                     backup=lambda p: p + ".copy", run_command=run_command)
    assert out["written"] and out["backup"] == str(path) + ".copy" and path.read_text() == "good too\n"


def test_a_check_command_must_name_the_file():
    with pytest.raises(ValueError, match="%s"):
        files.check_argv("/usr/sbin/nft -c -f", "/tmp/x")
    assert files.check_argv("/usr/sbin/sshd -t -f %s", "/tmp/x") == ["/usr/sbin/sshd", "-t", "-f", "/tmp/x"]


def test_systemctl_show_of_several_units_is_parsed_in_the_order_asked():
    out = ("Id=nftables.service\nActiveState=inactive\nUnitFileState=disabled\n\n"
           "Id=php8.4-fpm.service\nActiveState=reloading\nUnitFileState=enabled\n")
    calls = []

    def fake(argv):
        calls.append(argv)
        return 0, out, ""
    states = systemd.show(fake, ["nftables.service", "php8.4-fpm.service"])
    assert calls == [["systemctl", "show", "--property=Id,ActiveState,UnitFileState", "nftables.service", "php8.4-fpm.service"]]
    assert systemd.summary(states["nftables.service"]) == dict(active=False, enabled=False)
    assert systemd.summary(states["php8.4-fpm.service"]) == dict(active=True, enabled=True)
    assert systemd.show(fake, []) == {} and len(calls) == 1
    with pytest.raises(RuntimeError, match="no bus"):
        systemd.show(lambda argv: (1, "", "no bus\n"), ["x.service"])


def test_the_choice_in_force_of_a_kernel_file():
    assert records.current_choice("always madvise [never]\n") == "never"
    assert records.current_choice("1\n") == "1"
    assert records.current_choice("4096\t 8192\n") == "4096 8192"
    assert records.sysctl_path("net.core.somaxconn") == "/proc/sys/net/core/somaxconn"


class Module:
    def __init__(self, check_mode=False):
        self.check_mode = check_mode

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


def new_result():
    return dict(changed=False, live={}, live_skipped=[])


def test_a_kernel_value_is_written_only_where_it_differs(tmp_path):
    knob = tmp_path / "enabled"
    knob.write_text("always madvise [never]\n")
    result = new_result()
    mod.sync_kernel(Module(), result, str(knob), "thp", "never")
    assert result == new_result()
    knob.write_text("[always] madvise never\n")
    mod.sync_kernel(Module(check_mode=True), result, str(knob), "thp", "never")
    assert result["changed"] and knob.read_text() == "[always] madvise never\n"
    result = new_result()
    mod.sync_kernel(Module(), result, str(knob), "thp", "never")
    assert result["live"] == {"thp": dict(before="always", after="never")} and knob.read_text() == "never\n"


def test_a_kernel_value_that_cannot_be_written_is_listed_not_failed(tmp_path, monkeypatch):
    knob = tmp_path / "overcommit_memory"
    knob.write_text("0\n")
    monkeypatch.setattr(mod.os, "access", lambda path, how: False)   # a read-only /proc/sys
    result = new_result()
    mod.sync_kernel(Module(), result, str(knob), "vm.overcommit_memory", 1)
    assert result == dict(changed=False, live={}, live_skipped=["vm.overcommit_memory"]) and knob.read_text() == "0\n"


def test_a_secret_content_is_not_in_the_modules_log_line(monkeypatch):
    """AnsibleModule logs its arguments to the journal ("Invoked with ..."): a list of files
    is logged with its contents escaped (a multi-line secret is not recognised there and
    stays in clear), so secret contents go in an option of their own that is not logged."""
    import json

    from ansible.module_utils import basic
    secret = "; ini\nsession.save_path = \"unix:///run/x.sock?auth=S3cretPassw0rd&database=1\"\n"
    args = {"ANSIBLE_MODULE_ARGS": {"files": [{"path": "/etc/x.ini", "mode": "0600"}, {"path": "/etc/y", "content": "y\n"}],
                                    "secrets": {"/etc/x.ini": secret}}}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps(args).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    logged = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: logged.append(msg))
    module = basic.AnsibleModule(argument_spec=records.ARGUMENT_SPEC, supports_check_mode=True)
    assert module.params["secrets"]["/etc/x.ini"] == secret
    assert logged and "/etc/x.ini" in logged[0] and "S3cretPassw0rd" not in logged[0], logged


def test_a_content_its_check_refuses_leaves_every_file_of_the_run_as_it_was(tmp_path, monkeypatch):
    """Every check runs before any file is written: the firewall fragment a rerun writes with an
    exporter's files must not leave the others half-applied when nft refuses it."""
    import json

    from ansible.module_utils import basic
    user, group = me()
    first, second = tmp_path / "first.conf", tmp_path / "second.conf"
    second.write_text("good\n")
    args = {"ANSIBLE_MODULE_ARGS": {"files": [
        {"path": str(first), "content": "new\n", "owner": user, "group": group},
        {"path": str(second), "content": "bad\n", "owner": user, "group": group,
         "validate": "/bin/sh -c 'grep -q good \"$1\" || { echo refused >&2; exit 1; }' x %s"}]}}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps(args).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    out = {}
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", lambda self, **kw: (out.update(kw), exit(1)))
    with pytest.raises(SystemExit):
        mod.main()
    assert "second.conf does not pass" in out["msg"] and "nothing was written" in out["msg"] and "refused" in out["msg"]
    assert not first.exists() and second.read_text() == "good\n"
    assert sorted(os.listdir(tmp_path)) == ["second.conf"]   # no temporary file left


def test_an_nft_fragment_is_checked_after_the_table_it_adds_to(monkeypatch):
    seen = []

    def fake_nft(argv):
        seen.append(open(argv[-1]).read())
        return (1, "", "Error: syntax error") if "bad" in seen[-1] else (0, "", "")
    monkeypatch.setattr(files.os.path, "exists", lambda path: path == files.NFT or os.path.lexists(path))
    files.check_content(fake_nft, "nft", "/etc/nftables.d/x.nft", "add rule inet filter input accept\n")
    assert seen[0].startswith(files.NFT_STUB) and seen[0].endswith("add rule inet filter input accept\n")
    with pytest.raises(files.CheckFailed, match="syntax error"):
        files.check_content(fake_nft, "nft", "/etc/nftables.d/x.nft", "bad\n")
