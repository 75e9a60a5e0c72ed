"""roles/redis_backup/library/redis_backup_setup.py: files and folders written only where they
differ, with their owner and mode from the start."""
import grp
import os
import pwd
import stat

from ansible_collections.redis_vps.server.plugins.modules import redis_backup_setup as mod


class FakeModule:
    check_mode = False

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


def me():
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def test_a_file_is_written_when_it_differs_and_left_alone_when_not(tmp_path):
    user, group = me()
    spec = {"path": str(tmp_path / "secret"), "content": "pw\n", "owner": user, "group": group, "mode": "0600"}
    assert mod.sync_file(FakeModule(), spec) is True
    assert (tmp_path / "secret").read_text() == "pw\n"
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert mod.sync_file(FakeModule(), spec) is False
    os.chmod(tmp_path / "secret", 0o644)
    assert mod.sync_file(FakeModule(), spec) is True
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert mod.sync_file(FakeModule(), dict(spec, content="other\n")) is True
    assert (tmp_path / "secret").read_text() == "other\n"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]     # no temporary file left


def test_check_mode_writes_nothing(tmp_path):
    user, group = me()
    module = FakeModule()
    module.check_mode = True
    assert mod.sync_file(module, {"path": str(tmp_path / "f"), "content": "x", "owner": user, "group": group,
                                  "mode": "0644"}) is True
    assert mod.sync_dir(module, {"path": str(tmp_path / "d"), "owner": user, "group": group, "mode": "0700"}) is True
    assert list(tmp_path.iterdir()) == []


def test_a_folder_gets_its_mode(tmp_path):
    user, group = me()
    spec = {"path": str(tmp_path / "queue"), "owner": user, "group": group, "mode": "0700"}
    assert mod.sync_dir(FakeModule(), spec) is True
    assert stat.S_IMODE((tmp_path / "queue").stat().st_mode) == 0o700
    assert mod.sync_dir(FakeModule(), spec) is False
