"""The Sentinel's passwords in plugins/modules/redis_sentinel.py (issue 17: a rotation of `sentinel`):
which passwords a Sentinel's own file holds, in the order a login tries them, and its auth-pass."""
from ansible_collections.redis_vps.server.plugins.modules import redis_sentinel as mod

# As Sentinel rewrites it after a rotation's phase 1: requirepass as at its start, the rest new.
REWRITTEN = """port 0
requirepass "old1"
sentinel sentinel-pass new1
sentinel monitor queue 172.29.1.11 6380 2
sentinel auth-user queue sentinel
sentinel auth-pass queue new1
user default on sanitize-payload #aa #bb ~* &* +@all
"""


def test_the_password_in_force_comes_first_and_each_once():
    assert mod.conf_passwords(REWRITTEN, "queue") == ["new1", "old1"]
    assert mod.conf_passwords(REWRITTEN.replace("sentinel-pass new1", "sentinel-pass old1"), "queue")[0] == "old1"


def test_another_masters_auth_pass_and_an_empty_file_give_nothing():
    assert mod.conf_passwords("sentinel auth-pass other x\n", "queue") == []
    assert mod.conf_passwords(None, "queue") == []
    assert mod.auth_pass_of(REWRITTEN, "other") == ""


def test_auth_pass_is_read_quoted_or_not():
    assert mod.auth_pass_of(REWRITTEN, "queue") == "new1"
    assert mod.auth_pass_of('sentinel auth-pass queue "q2"\n', "queue") == "q2"
