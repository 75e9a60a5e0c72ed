"""The adoption's pure functions: module_utils/redis_handmade.py (config parsing as Redis
parses it, whether an RDB holds keys, pool session lines), library/redis_adopt.py (the
dump's records, RESTORE commands, the count), filter_plugins/redis_adopt_report.py."""
import base64
import socket
import threading

import pytest

from ansible_collections.redis_vps.server.plugins.modules import redis_adopt
from ansible_collections.redis_vps.server.plugins.filter import redis_adopt_report
from ansible_collections.redis_vps.server.plugins.module_utils import redis_handmade as mod
from ansible_collections.redis_vps.server.plugins.module_utils import redis_resp

# An empty dataset as Redis 7 writes it: header, AUX fields, EOF, checksum.
EMPTY_RDB = (b"REDIS0011" + b"\xfa\x09redis-ver\x067.0.15" + b"\xfa\x0aredis-bits\xc0\x40"
             + b"\xfa\x05ctime\xc2\x00\x00\x00\x00" + b"\xfa\x08aof-base\xc0\x00" + b"\xff" + b"\x00" * 8)
# One key: SELECTDB 0, RESIZEDB, a string.
ONE_KEY_RDB = EMPTY_RDB[:-9] + b"\xfe\x00\xfb\x01\x00\x00\x03foo\x03bar" + b"\xff" + b"\x00" * 8


def test_conf_args_split_as_redis_does():
    assert mod.conf_args('requirepass "a b\\"c"') == ["requirepass", 'a b"c']
    assert mod.conf_args("requirepass 'it\\'s'") == ["requirepass", "it's"]
    assert mod.conf_args('save ""') == ["save", ""]
    assert mod.conf_args('x "\\x41\\n"') == ["x", "A\n"]
    assert mod.conf_args('bad "unclosed') is None
    assert mod.conf_args("  ") == []


def test_parse_conf_keeps_the_last_value_and_lists_includes():
    conf = mod.parse_conf("# requirepass commented\nPort 6379\nrequirepass first\nrequirepass second\n"
                          "include /etc/redis/a.conf\nsave 3600 1 300 100\n")
    assert conf["requirepass"] == "second" and conf["port"] == "6379"
    assert conf["include"] == ["/etc/redis/a.conf"] and conf["save"] == "3600 1 300 100"
    assert "commented" not in str(conf)


@pytest.mark.parametrize("value, ok", [
    ("hand-made-requirepass-0123456789", True), ("YourVeryStrongRedisPassword!", False), ("short", False),
    ("", False), (" leading-space-password-xxx", False), ("has salt=in-it-0123456789", False),
    ("caf\u00e9-0123456789-0123456789", False)])
def test_password_ok_is_the_roles_rule(value, ok):
    assert mod.password_ok(value) is ok


def test_keyspace_counts_only_databases_with_keys():
    info = "# Keyspace\r\ndb0:keys=35,expires=30,avg_ttl=0\r\ndb1:keys=100,expires=0,avg_ttl=0\r\ndb4:keys=0,expires=0\r\n"
    assert mod.keyspace(info) == {0: 35, 1: 100}
    assert mod.keyspace("# Keyspace\r\n") == {}


def test_an_empty_rdb_holds_no_keys_one_with_a_key_does():
    assert mod.rdb_has_keys(EMPTY_RDB) is False
    assert mod.rdb_has_keys(ONE_KEY_RDB) is True
    # Unreadable content never counts as empty.
    assert mod.rdb_has_keys(b"REDIS0011\xfa\xc3") is True
    assert mod.rdb_has_keys(b"garbage") is True
    assert mod.rdb_has_keys(b"") is False


def test_lzf_and_long_aux_strings_are_skipped():
    lzf = b"\xfa\x03key\xc3\x05\x0a" + b"x" * 5              # LZF: 5 bytes compressed, 10 original
    long_value = b"\xfa\x03key\x41\x00" + b"y" * 256           # 14-bit length 256
    assert mod.rdb_has_keys(b"REDIS0011" + lzf + long_value + b"\xff" + b"\x00" * 8) is False


def test_aof_dir_holds_data_when_its_base_has_keys_or_an_incr_file_is_not_empty():
    assert mod.aof_dir_has_data({"appendonly.aof.1.base.rdb": EMPTY_RDB, "appendonly.aof.1.incr.aof": 0}) is False
    assert mod.aof_dir_has_data({"appendonly.aof.1.base.rdb": ONE_KEY_RDB, "appendonly.aof.1.incr.aof": 0}) is True
    assert mod.aof_dir_has_data({"appendonly.aof.1.base.rdb": EMPTY_RDB, "appendonly.aof.1.incr.aof": 120}) is True
    assert mod.aof_dir_has_data({"appendonly.aof.manifest": b"x"}) is False


POOL = """[www]
user = www-data
;php_value[session.save_path] = commented
php_value[session.save_handler] = redis
php_value[session.save_path] = "tcp://127.0.0.1:6379?auth=secret-password&database=1"
php_admin_value[ session.gc_maxlifetime ] = 7200
php_admin_value[memory_limit] = 32M
"""


def test_pool_session_lines_are_named_never_their_values():
    found = mod.pool_session_lines("/etc/php/8.4/fpm/pool.d/www.conf", POOL)
    assert [(f["line"], f["directive"], f["setting"]) for f in found] == [
        (4, "php_value", "session.save_handler"), (5, "php_value", "session.save_path"),
        (6, "php_admin_value", "session.gc_maxlifetime")]
    assert "secret-password" not in str(found)


def test_neutralise_pool_comments_out_only_the_session_lines():
    out = mod.neutralise_pool(POOL)
    assert mod.pool_session_lines("x", out) == []
    assert "; redis-vps adopt: php_value[session.save_handler] = redis\n" in out
    assert "\nphp_admin_value[memory_limit] = 32M\n" in out and "\nuser = www-data\n" in out
    assert mod.neutralise_pool(out) == out


@pytest.mark.parametrize("report, pending", [
    ({"databases": {}, "data_files": [], "pools": [], "error": ""}, False),   # a fresh package instance
    ({"databases": {"0": 3}}, True), ({"data_files": ["/var/lib/redis/dump.rdb"]}, True),
    ({"pools": [{"path": "p"}]}, True), ({"error": "its keys could not be read (WRONGPASS)"}, True)])
def test_holds_data(report, pending):
    assert mod.holds_data(report) is pending


def test_queue_data_reads_the_files_and_the_replication_user(tmp_path):
    conf = tmp_path / "redis-queue.conf"
    conf.write_text("appendonly yes\nappenddirname appendonlydir\n")
    (tmp_path / "appendonlydir").mkdir()
    (tmp_path / "appendonlydir" / "appendonly.aof.1.base.rdb").write_bytes(EMPTY_RDB)
    (tmp_path / "appendonlydir" / "appendonly.aof.1.incr.aof").write_bytes(b"")
    assert mod.queue_data(str(conf), str(tmp_path)) == {"holds_data": False, "replicated": False}
    (tmp_path / "appendonlydir" / "appendonly.aof.1.incr.aof").write_bytes(b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n")
    conf.write_text("appendonly yes\nmasteruser replica\n")
    assert mod.queue_data(str(conf), str(tmp_path)) == {"holds_data": True, "replicated": True}
    assert mod.queue_data(str(tmp_path / "none.conf"), str(tmp_path / "none")) == {"holds_data": False, "replicated": False}


def test_records_restore_with_the_absolute_expiry():
    item = redis_adopt.record(2, b"jobs:stream", 5000, b"\x0f\x01payload", 1_000_000)
    assert item["expire_at"] == 1_005_000 and base64.b64decode(item["key"]) == b"jobs:stream"
    assert redis_adopt.restore_command(item) == [b"RESTORE", b"jobs:stream", b"1005000", b"\x0f\x01payload",
                                                 b"REPLACE", b"ABSTTL"]
    forever = redis_adopt.record(0, b"k", -1, b"p", 1_000_000)
    assert forever["expire_at"] == 0
    assert redis_adopt.restore_command(forever) == [b"RESTORE", b"k", b"0", b"p", b"REPLACE"]


def test_tally_tells_moved_expired_and_missing_apart():
    items = [{"db": 0, "expire_at": 0}, {"db": 0, "expire_at": 500}, {"db": 1, "expire_at": 0}, {"db": 1, "expire_at": 5000}]
    assert redis_adopt.tally(items, [True, False, False, True], now_ms=1000) == {
        "0": {"found": 2, "moved": 1, "expired": 1, "missing": 0},
        "1": {"found": 2, "moved": 1, "expired": 0, "missing": 1}}


def test_summary_lists_each_database_and_pool_line():
    found = {"installed": True, "active": True, "enabled": True, "unit": "redis-server.service",
             "databases": {"1": 100, "0": 35, "10": 1}, "data_files": [], "error": "",
             "pools": [{"path": "/etc/php/8.4/fpm/pool.d/www.conf", "line": 5, "directive": "php_value",
                        "setting": "session.save_path"}]}
    assert redis_adopt_report.redis_adopt_summary(found) == (
        "redis-server.service (running, enabled) holding db 0: 35 keys, db 1: 100 keys, db 10: 1 keys; "
        "PHP-FPM pool lines that set sessions themselves: /etc/php/8.4/fpm/pool.d/www.conf line 5 "
        "php_value[session.save_path]")
    assert redis_adopt_report.redis_adopt_summary({"installed": True, "databases": {}, "pools": []}) == "nothing"
    assert redis_adopt_report.redis_conf_value('port 6379\nrequirepass "p w"\n', "requirepass") == "p w"
    assert redis_adopt_report.redis_conf_value("port 6379\n", "requirepass") == ""


def test_resp_raw_replies_and_pipeline():
    ours, theirs = socket.socketpair()

    def run():
        with theirs:
            theirs.recv(65536)
            theirs.sendall(b"$3\r\n\x00\xff\x01\r\n+OK\r\n-BUSYKEY Target key name already exists.\r\n:1\r\n")

    threading.Thread(target=run, daemon=True).start()
    conn = redis_resp.RespConnection.__new__(redis_resp.RespConnection)
    conn.sock, conn.reader, conn.raw = ours, ours.makefile("rb"), True
    replies = conn.pipeline([(b"DUMP", b"k"), ("SELECT", 1), ("RESTORE", "k", 0, b"x"), ("EXISTS", "k")])
    assert replies[0] == b"\x00\xff\x01" and replies[1] == "OK" and replies[3] == 1
    assert isinstance(replies[2], redis_resp.RedisError) and "BUSYKEY" in str(replies[2])
