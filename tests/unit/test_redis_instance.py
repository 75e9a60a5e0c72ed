import os
import socket
import threading

import pytest
from ansible_collections.redis_vps.server.plugins.modules import redis_instance as mod
from ansible_collections.redis_vps.server.plugins.module_utils import redis_resp


def test_policy_changes_before_size():
    running = {"maxmemory": "100", "maxmemory-policy": "noeviction", "hz": "10"}
    intended = {"maxmemory": "50", "maxmemory-policy": "allkeys-lru", "hz": "10"}
    changes, restart = mod.plan_changes(running, intended, {"maxmemory", "maxmemory-policy"})
    assert [c[0] for c in changes] == ["maxmemory-policy", "maxmemory"]
    assert changes[0] == ("maxmemory-policy", "noeviction", "allkeys-lru")
    assert restart == []


def test_other_differences_need_a_restart_and_equal_values_nothing():
    running = {"port": "6379", "bind": "127.0.0.1 -::1", "timeout": "300", "save": ""}
    intended = {"port": 6390, "bind": "127.0.0.1 -::1", "timeout": 300, "save": "", "not-a-setting": "x"}
    changes, restart = mod.plan_changes(running, intended, {"timeout"})
    assert changes == []
    assert restart == ["port"]


def serve_once(replies):
    """A socket peer that answers each command with the next canned RESP reply."""
    ours, theirs = socket.socketpair()
    received = []

    def run():
        with theirs:
            reader = theirs.makefile("rb")
            for reply in replies:
                count = int(reader.readline()[1:])
                args = []
                for _ in range(count):
                    size = int(reader.readline()[1:])
                    args.append(reader.read(size + 2)[:-2].decode())
                received.append(args)
                theirs.sendall(reply)

    threading.Thread(target=run, daemon=True).start()
    return ours, received


def test_resp_client_encodes_commands_and_parses_replies():
    sock, received = serve_once([b"+OK\r\n", b"*4\r\n$4\r\nsave\r\n$0\r\n\r\n$2\r\nhz\r\n$2\r\n20\r\n",
                                 b":42\r\n", b"$-1\r\n", b"-WRONGPASS invalid\r\n"])
    conn = redis_resp.RespConnection.__new__(redis_resp.RespConnection)
    conn.sock, conn.reader = sock, sock.makefile("rb")
    assert conn.call("AUTH", "admin", "p w") == "OK"
    assert conn.call("CONFIG", "GET", "*") == ["save", "", "hz", "20"]
    assert conn.call("DBSIZE") == 42
    assert conn.call("GET", "missing") is None
    with pytest.raises(redis_resp.RedisError, match="WRONGPASS"):
        conn.call("AUTH", "admin", "bad")
    assert received[0] == ["AUTH", "admin", "p w"]
    conn.close()


@pytest.mark.parametrize("info, expected", [
    ({"redis_version": "7.0.15"}, {"engine": "redis", "version": "7.0.15"}),
    ({"redis_version": "8.0.2", "server_name": "redis"}, {"engine": "redis", "version": "8.0.2"}),
    ({"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.1.1"},
     {"engine": "valkey", "version": "8.1.1"}),
])
def test_server_of_reads_the_engine_and_its_own_version(info, expected):
    assert mod.server_of(info) == expected


def test_binary_replaced_reads_the_kernels_mark(tmp_path, monkeypatch):
    links = {"/proc/1/exe": "/usr/bin/redis-server", "/proc/2/exe": "/usr/bin/redis-server (deleted)"}
    monkeypatch.setattr(mod.os, "readlink", lambda path: links[path])
    assert not mod.binary_replaced("1")
    assert mod.binary_replaced("2")
    assert not mod.binary_replaced(None)


class FakeModule:
    """What sync_files uses of AnsibleModule."""

    def __init__(self, tmp_path, check_mode=False, **files):
        import grp
        import pwd
        self.check_mode = check_mode
        self.params = dict(owner=pwd.getpwuid(os.getuid()).pw_name, group=grp.getgrgid(os.getgid()).gr_name,
                           mode="0640", conf=None, users=None)
        for kind, content in files.items():
            self.params[kind] = dict(path=str(tmp_path / kind), content=content)

    def backup_local(self, path):
        backup = path + ".bak~"
        with open(path) as src, open(backup, "w") as dst:
            dst.write(src.read())
        return backup

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs["msg"])


def new_result():
    return dict(changed=False, written=[], backups={})


def test_files_are_written_with_their_mode_and_the_old_one_kept(tmp_path):
    (tmp_path / "conf").write_text("maxmemory 100mb\n")
    os.chmod(tmp_path / "conf", 0o644)
    module, result = FakeModule(tmp_path, conf="maxmemory 200mb\n", users="user admin on\n"), new_result()
    diffs = mod.sync_files(module, result)
    assert result["changed"] and sorted(result["written"]) == [str(tmp_path / "conf"), str(tmp_path / "users")]
    assert (tmp_path / "conf").read_text() == "maxmemory 200mb\n"
    assert oct(os.stat(tmp_path / "users").st_mode & 0o777) == "0o640"
    assert oct(os.stat(tmp_path / "conf").st_mode & 0o777) == "0o640"
    assert open(result["backups"][str(tmp_path / "conf")]).read() == "maxmemory 100mb\n"
    assert str(tmp_path / "users") not in result["backups"]          # there was none before
    assert [d["after"] for d in diffs] == ["maxmemory 200mb\n"]      # the users file is never in a diff
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary file left


def test_same_content_changes_nothing_but_a_wrong_mode(tmp_path):
    (tmp_path / "conf").write_text("x\n")
    os.chmod(tmp_path / "conf", 0o640)
    result = new_result()
    assert mod.sync_files(FakeModule(tmp_path, conf="x\n"), result) == [] and not result["changed"]
    os.chmod(tmp_path / "conf", 0o666)
    mod.sync_files(FakeModule(tmp_path, conf="x\n"), result)
    assert result["changed"] and result["written"] == []
    assert oct(os.stat(tmp_path / "conf").st_mode & 0o777) == "0o640"


def test_check_mode_writes_nothing(tmp_path):
    (tmp_path / "conf").write_text("old\n")
    result = new_result()
    diffs = mod.sync_files(FakeModule(tmp_path, check_mode=True, conf="new\n"), result)
    assert result["changed"] and diffs[0]["before"] == "old\n"
    assert (tmp_path / "conf").read_text() == "old\n" and result["backups"] == {}


def test_data_folder_is_created_then_left_alone(tmp_path):
    module, result = FakeModule(tmp_path), new_result()
    module.params["data_dir"] = dict(path=str(tmp_path / "data"), owner=module.params["owner"],
                                     group=module.params["group"], mode="0700")
    mod.sync_dir(module, result)
    assert result["changed"] and oct(os.stat(tmp_path / "data").st_mode & 0o777) == "0o700"
    result = new_result()
    mod.sync_dir(module, result)
    assert not result["changed"]


def test_units_state_reads_one_systemctl_show_for_every_unit():
    class Module:
        def run_command(self, argv):
            assert argv[:2] == ["systemctl", "show"] and argv[-2:] == ["redis-server@cache.service", "x@cache.service"]
            return 0, ("Id=redis-server@cache.service\nActiveState=inactive\nUnitFileState=enabled\n\n"
                       "Id=x@cache.service\nActiveState=active\nUnitFileState=disabled\n"), ""
    states = mod.units_state(Module(), ["redis-server@cache.service", "x@cache.service"])
    assert states["redis-server@cache.service"]["ActiveState"] == "inactive"
    assert states["x@cache.service"] == {"Id": "x@cache.service", "ActiveState": "active", "UnitFileState": "disabled"}


def test_other_files_are_written_only_when_they_differ(tmp_path):
    import grp
    import pwd
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    path = tmp_path / "exporter" / "cache.env"

    class Module:
        check_mode = False
        params = {"files": [{"path": str(path), "content": "A=1\n", "owner": me, "group": group, "mode": "0640"}]}

        def fail_json(self, **kw):
            raise AssertionError(kw)
    result = {"written": [], "changed": False}
    mod.sync_other_files(Module(), result)
    assert result["written"] == [str(path)] and path.read_text() == "A=1\n"
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    result = {"written": [], "changed": False}
    mod.sync_other_files(Module(), result)
    assert result == {"written": [], "changed": False}


OURS = "# managed\nport 0\ndir /var/lib/redis/queue\nmaxmemory 128mb\nsave 3600 1 300 100\n"
SPEC = {"content": OURS, "server_owned": ["replicaof"], "server_added": ["latency-tracking-info-percentiles"],
        "initial": {"replicaof": "10.0.0.1 6380"}}


def test_a_plain_conf_is_compared_to_the_byte():
    assert mod.intended_conf({"content": OURS}, OURS) == (OURS, True)
    assert mod.intended_conf({"content": OURS}, OURS.replace("/var", '"/var')) == (OURS, False)


def test_a_replicated_conf_keeps_sentinels_replicaof_and_ignores_rewrite_quoting():
    rewritten = ('# managed\nport 0\ndir "/var/lib/redis/queue"\nmaxmemory 128mb\nsave 3600 1\n\n# Generated by CONFIG REWRITE\n'
                 'latency-tracking-info-percentiles 50 99 99.9\nreplicaof 10.0.0.3 6380\nsave 300 100\n')
    content, same = mod.intended_conf(SPEC, rewritten)
    assert same and content.endswith("replicaof 10.0.0.3 6380\n")
    # a new primary: Sentinel removed the line, and it stays removed
    content, same = mod.intended_conf(SPEC, rewritten.replace("replicaof 10.0.0.3 6380\n", ""))
    assert same and "replicaof" not in content


def test_a_replicated_conf_changes_when_our_settings_do_or_unknown_lines_appear():
    content, same = mod.intended_conf(SPEC, OURS.replace("128mb", "64mb") + "replicaof 10.0.0.3 6380\n")
    assert not same and "maxmemory 128mb" in content and "replicaof 10.0.0.3 6380" in content
    assert not mod.intended_conf(SPEC, OURS + "appendonly no\n")[1]


def test_a_new_replicated_conf_gets_the_initial_replicaof():
    content, same = mod.intended_conf(SPEC, None)
    assert not same and content.endswith("replicaof 10.0.0.1 6380\n")
    assert "replicaof" not in mod.intended_conf(dict(SPEC, initial={"replicaof": ""}), None)[0]


def test_secret_settings_are_hidden_in_results_and_diffs():
    result = {"running_config": {"masterauth": "s3cret", "port": "0"},
              "applied": {"masterauth": {"before": "old", "after": "s3cret"}}}
    diffs = [{"before": "port 0\nmasterauth old\n", "after": "port 0\nmasterauth s3cret\n"}]
    mod.mask(result, diffs, ["masterauth"])
    assert result["running_config"] == {"masterauth": "********", "port": "0"}
    assert result["applied"]["masterauth"] == {"before": "********", "after": "********"}
    assert "s3cret" not in str(diffs) and "old" not in str(diffs) and "masterauth ********" in diffs[0]["after"]


def test_a_config_rewrite_of_sizes_and_buffer_limits_changes_nothing():
    """Sentinel's CONFIG REWRITE after a failover writes sizes with units and the buffer
    limits one class a line, `slave` as `replica`: the same settings, no rewrite of ours."""
    ours = ("repl-backlog-size 15728640\nclient-query-buffer-limit 33554432\n"
            "client-output-buffer-limit normal 0 0 0 slave 33554432 16777216 60 pubsub 33554432 8388608 60\n")
    rewritten = ("repl-backlog-size 15mb\nclient-query-buffer-limit 32mb\n"
                 "client-output-buffer-limit normal 0 0 0\nclient-output-buffer-limit replica 32mb 16mb 60\n"
                 "replicaof 10.0.0.3 6380\n")   # (pubsub at its default: left out, as Redis 8.0 does)
    spec = {"content": ours, "server_owned": ["replicaof"], "server_added": []}
    assert mod.intended_conf(spec, rewritten)[1]
    assert not mod.intended_conf(spec, rewritten.replace("replica 32mb 16mb", "replica 64mb 16mb"))[1]
    assert mod.directives("maxmemory 1m\nmaxmemory-policy noeviction\n") == {
        "maxmemory": ["1000000"], "maxmemory-policy": ["noeviction"]}


def test_copies_an_interrupted_run_left_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "conf").write_text("x\n")
    os.chmod(tmp_path / "conf", 0o640)
    stale = tmp_path / "conf.4242.2026-12-01@12:24:19~"     # AnsibleModule.backup_local's name
    stale.write_text("old\n")
    others = [tmp_path / "conf~", tmp_path / "conf.bak", tmp_path / "confx.4242.2026-12-01@12:24:19~"]
    for other in others:
        other.write_text("not ours\n")
    result = new_result()
    assert mod.sync_files(FakeModule(tmp_path, check_mode=True, conf="x\n"), result) == []
    assert result["changed"] and stale.exists()                # check mode says so, removes nothing
    result = new_result()
    assert mod.sync_files(FakeModule(tmp_path, conf="x\n"), result) == []
    assert result["changed"] and result["removed"] == [str(stale)] and result["written"] == []
    assert not stale.exists() and all(other.exists() for other in others)
    result = new_result()
    mod.sync_files(FakeModule(tmp_path, conf="x\n"), result)
    assert not result["changed"]


def test_a_list_of_instances_runs_each_and_one_failure_stops_no_other(tmp_path, monkeypatch):
    """O(instances): one module run for the host's instances (one run less on every rerun). Each
    instance's result comes back in `results` with its `instance` as given; one that fails (here:
    its config file cannot be written) is reported failed, with its message, and the others still
    run; a secret setting's value is not returned."""
    import grp
    import json
    import pwd

    from ansible.module_utils import basic
    owner, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name

    def instance(name, conf):
        return dict(socket=str(tmp_path / ("%s.sock" % name)), password="Adm1nPassw0rd", owner=owner, group=group,
                    config={"maxmemory": "100"}, conf={"path": conf, "content": "maxmemory 100\nmasterauth T0pS3cret\n"},
                    secret_config={"masterauth": "T0pS3cret"}, instance={"name": name, "service": "x@%s" % name})
    args = {"ANSIBLE_MODULE_ARGS": {"instances": [instance("cache", str(tmp_path / "cache.conf")),
                                                  instance("queue", str(tmp_path / "missing" / "queue.conf"))],
                                    "_ansible_diff": True}}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps(args).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    out = {}
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", lambda self, **kw: (out.update(kw, failed=True), exit(1)))
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", lambda self, **kw: (out.update(kw), exit(0)))
    with pytest.raises(SystemExit):
        mod.main()
    cache, queue = out["results"]
    assert (cache["instance"]["name"], queue["instance"]["name"]) == ("cache", "queue")
    assert not cache["failed"] and cache["written"] == [str(tmp_path / "cache.conf")] and not cache["running"]
    assert (tmp_path / "cache.conf").read_text().startswith("maxmemory 100\n")
    assert queue["failed"] and "queue.conf" in queue["msg"]
    assert out["failed"] and out["changed"] and queue["msg"] in out["msg"]
    # The diff of the file written, at the top (a task's diff), with the secret setting hidden.
    assert [d["after_header"] for d in out["diff"]] == [str(tmp_path / "cache.conf")]
    assert "T0pS3cret" not in json.dumps(out["diff"]) and "masterauth ********" in out["diff"][0]["after"]


def test_the_secrets_of_a_list_of_instances_are_masked_as_the_modules_own():
    spec = dict(mod.instance_spec(), instance=dict(type="raw"))
    element = dict(socket="/run/x.sock", password="Adm1n", config={}, users={"path": "/x", "content": "user a on #h\n"},
                   files=[{"path": "/y", "content": "Qu3ue\n"}, {"path": "/z", "content": ""}],
                   secret_config={"masterauth": "R3plica"}, app_password=None)
    assert mod.no_log_values(spec, element) == {"Adm1n", "user a on #h\n", "Qu3ue\n", "R3plica"}
