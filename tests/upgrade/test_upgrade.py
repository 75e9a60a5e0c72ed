"""An in-place upgrade of a provisioned Debian 12 host to Debian 13 (apt full-upgrade
to trixie), then a rerun of site.yml: every queue key and PHP session is kept, the
new Redis runs, and the rerun says what it changed. Runs in molecule/upgrade only
(it rewrites the host's apt sources); tests/infra then runs on the upgraded host.
"""
import re

import pytest
from helpers import INVENTORY, changed_count, fill, php_session, playbook

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

KEYS = 10000
UPGRADE = (
    "sed -i 's/bookworm/trixie/g' /etc/apt/sources.list"
    " && apt-get update -qq"
    " && DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Options::=--force-confold full-upgrade"
)


def test_upgrade_from_debian_12_to_13_keeps_queue_keys_and_sessions(host, redis):
    assert host.system_info.codename == "bookworm", "this scenario starts from Debian 12"
    assert redis.info("queue", "server")["redis_version"].startswith("7.0.")
    report = fill(host, redis, "queue", "jobs", count=KEYS, size=100)
    assert "errors: 0" in report, report
    redis.run("queue", "XADD", "upgrade:stream", "*", "job", "1", user="default")
    redis.run("queue", "XGROUP", "CREATE", "upgrade:stream", "workers", "0", user="default")
    cookie, count = php_session(host, "/var/www/upgrade")
    keys_before = int(redis.run("queue", "DBSIZE"))
    assert keys_before >= KEYS + 1

    upgraded = host.run(UPGRADE)
    assert upgraded.rc == 0, upgraded.stderr[-3000:]
    assert host.system_info.codename == "trixie" or "trixie" in host.file("/etc/os-release").content_string

    rc, out = playbook(limit=host.backend.get_hostname())
    assert rc == 0, out[-4000:]
    # What it changed, in the run's own words: the new PHP's sessions file and FPM,
    # and the instances that still ran the replaced Redis binary, restarted.
    assert changed_count(out) > 0, out[-3000:]
    assert re.search(r"TASK \[php_session : Point PHP sessions at the queue instance[^\]]*\] \**\s*changed", out), out[-3000:]
    server = redis.info("queue", "server")
    assert server["redis_version"].startswith("8."), "the queue still runs %s" % server["redis_version"]
    assert redis.info("cache", "server")["redis_version"].startswith("8.")
    assert int(redis.run("queue", "DBSIZE")) == keys_before
    assert redis.run("queue", "GET", "jobs:%d" % (KEYS - 1), user="default") == "x" * 100
    assert "workers" in redis.run("queue", "XINFO", "GROUPS", "upgrade:stream", user="default")
    _, count_after = php_session(host, "/var/www/upgrade", cookie)   # now through PHP 8.4's FPM
    assert count_after == count + 1, "the PHP session did not survive the upgrade"
    assert host.run("phpquery -V | sort -V | tail -1").stdout.strip() == "8.4"

    rc, out = playbook(limit=host.backend.get_hostname())
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
