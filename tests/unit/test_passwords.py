"""The password store, rotation and recovery parts of the modules (issue 17)."""
import grp
import hashlib
import os
import pwd

from ansible_collections.redis_vps.server.plugins.modules import redis_host
from ansible_collections.redis_vps.server.plugins.modules import redis_instance as mod

H = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("old", "new", "adm", "mon")}
BEFORE = ("user default on #%s ~* &* +@all -@dangerous +info\n"
          "user admin on #%s ~* &* +@all\nuser monitor on #%s resetkeys -@all +ping\n" % (H["old"], H["adm"], H["mon"]))


def test_a_users_file_is_read_as_hashes_and_rules():
    users = mod.acl_lines(BEFORE)
    assert users["default"] == ([H["old"]], ["on", "~*", "&*", "+@all", "-@dangerous", "+info"])
    assert mod.acl_lines("user x on >old +@all")["x"][0] == [H["old"]]
    assert mod.acl_lines("requirepass foo") is None


def test_a_rotation_is_a_password_only_change_applied_with_setuser():
    both = BEFORE.replace("#" + H["old"], "#%s #%s" % (H["new"], H["old"]))
    assert mod.password_changes(BEFORE, both) == {"default": sorted([H["new"], H["old"]])}
    retired = BEFORE.replace("#" + H["old"], "#" + H["new"])
    assert mod.password_changes(both, retired) == {"default": [H["new"]]}
    assert mod.password_changes(BEFORE, BEFORE) == {}


def test_any_other_change_needs_acl_load():
    assert mod.password_changes(BEFORE, BEFORE.replace("+info", "")) is None
    assert mod.password_changes(BEFORE, BEFORE + "user backup on #%s -@all\n" % H["new"]) is None
    assert mod.password_changes(None, BEFORE) is None


class FakeConn:
    def __init__(self, users):
        self.users, self.calls = users, []

    def call(self, *args):
        self.calls.append(args)
        if args[:2] == ("ACL", "GETUSER"):
            hashes = self.users.get(args[2])
            return None if hashes is None else ["flags", ["on"], "passwords", hashes]
        return "OK"


def test_running_passwords_and_setuser():
    conn = FakeConn({"default": [H["old"]], "admin": [H["adm"]]})
    assert mod.running_passwords(conn, ["default", "admin", "ghost"]) == {
        "default": [H["old"]], "admin": [H["adm"]], "ghost": None}
    mod.set_passwords(conn, {"default": [H["new"], H["old"]]})
    assert conn.calls[-1] == ("ACL", "SETUSER", "default", "resetpass", "#" + H["new"], "#" + H["old"])


def test_the_store_reports_names_and_retiring_hashes_never_values(tmp_path):
    (tmp_path / "queue").write_text("secret-queue\n")
    (tmp_path / "admin").write_text("secret-admin\n")
    (tmp_path / "queue.retiring").write_text(H["old"] + "\n")
    (tmp_path / "junk.retiring").write_text("not a hash\n")
    names, retiring = redis_host.credential_names(str(tmp_path))
    assert names == ["admin", "queue"] and retiring == {"queue": H["old"]}
    assert redis_host.credential_names(str(tmp_path / "none")) == ([], {})
    same = hashlib.sha256(b"secret-queue").hexdigest()
    assert redis_host.differing(str(tmp_path), {"queue": same, "admin": same, "cache": same}) == ["admin"]


def test_recovery_reads_each_consumers_file(tmp_path):
    ini = tmp_path / "sessions.ini"
    ini.write_text('session.save_path = "unix:///run/redis-queue/redis-server.sock?auth=a%26b%22c&database=1"\n')
    env = tmp_path / "cache.exporter.env"
    env.write_text('REDIS_USER=monitor\nREDIS_PASSWORD="q\\"u\\\\ote"\n')
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text('    tcp-check send "AUTH haproxy Hpw123\\r\\n"\n')
    conf = tmp_path / "redis-queue.conf"
    conf.write_text('port 0\nmasterauth "with space"\n')
    plain = tmp_path / "backup-password"
    plain.write_text("Bpw\n")
    find = redis_host.find_password
    assert find([{"path": str(tmp_path / "missing")}, {"path": str(ini), "pattern": '[?&]auth=([^&"]+)', "decode": "url"}]) == (
        'a&b"c', str(ini))
    assert find([{"path": str(tmp_path / "*.env"), "pattern": r'^REDIS_PASSWORD="((?:[^"\\]|\\.)*)"', "decode": "env"}])[0] == 'q"u\\ote'
    assert find([{"path": str(cfg), "pattern": r"AUTH haproxy (\S+)\\r\\n"}])[0] == "Hpw123"
    assert find([{"path": str(conf), "pattern": r"^masterauth\s+(.+)$", "decode": "shell"}])[0] == "with space"
    assert find([{"path": str(plain)}]) == ("Bpw", str(plain))
    assert find([{"path": str(tmp_path / "nothing*")}]) == (None, None)
    assert redis_host.verify(str(tmp_path / "no.sock"), "default", "x") is None


def test_the_store_folder_is_made_root_only_and_a_retired_hash_removed(tmp_path):
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    store = tmp_path / "credentials"
    gone = tmp_path / "queue.retiring"
    gone.write_text(H["old"])

    class Module:
        check_mode = False
        params = {"files": [{"path": str(store / "queue"), "content": "pw\n", "owner": me, "group": group,
                             "mode": "0600", "dir_mode": "0700"}], "absent": [str(gone)]}

        def fail_json(self, **kw):
            raise AssertionError(kw)
    result = {"written": [], "changed": False}
    mod.sync_other_files(Module(), result)
    assert oct(store.stat().st_mode & 0o777) == "0o700" and oct((store / "queue").stat().st_mode & 0o777) == "0o600"
    assert not gone.exists() and result["written"] == [str(store / "queue"), str(gone)]
    store.chmod(0o755)
    result = {"written": [], "changed": False}
    mod.sync_other_files(Module(), result)
    assert oct(store.stat().st_mode & 0o777) == "0o700" and result["changed"]
    result = {"written": [], "changed": False}
    mod.sync_other_files(Module(), result)
    assert result == {"written": [], "changed": False}


def test_a_user_added_beside_unchanged_ones_is_added_live():
    """A new release's new user (PHP sessions' `session`): ACL SETUSER, no ACL LOAD (issue 17)."""
    added = BEFORE + "user session on #%s resetkeys -@all ~PHPREDIS_SESSION:* +get\n" % H["new"]
    assert mod.added_users(BEFORE, added) == {"session": ([H["new"]], ["on", "resetkeys", "-@all", "~PHPREDIS_SESSION:*", "+get"])}
    assert mod.added_users(BEFORE, added.replace("+info", "")) is None       # another rule changed too
    assert mod.added_users(added, BEFORE) is None                             # a user removed
    assert mod.added_users(BEFORE, BEFORE) is None and mod.added_users(None, BEFORE) is None
