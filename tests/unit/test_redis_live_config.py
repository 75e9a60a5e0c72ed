import socket
import threading

import pytest
import redis_live_config as mod


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
    conn = mod.RespConnection.__new__(mod.RespConnection)
    conn.sock, conn.reader = sock, sock.makefile("rb")
    assert conn.call("AUTH", "admin", "p w") == "OK"
    assert conn.call("CONFIG", "GET", "*") == ["save", "", "hz", "20"]
    assert conn.call("DBSIZE") == 42
    assert conn.call("GET", "missing") is None
    with pytest.raises(mod.RedisError, match="WRONGPASS"):
        conn.call("AUTH", "admin", "bad")
    assert received[0] == ["AUTH", "admin", "p w"]
    conn.close()


def test_info_field():
    assert mod.info_field("# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n", "run_id") == "abc"
