"""PHP-FPM sessions land in the queue instance, proven by real FastCGI requests."""
import re

import pytest
from helpers import FCGI_CLIENT, destructive, php_request_command

SCRIPT_DIR = "/var/www/redis-vps-test"
PHP = """<?php
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
header('Content-Type: text/plain');
echo 'count=', $_SESSION['n'], ' id=', session_id(), ' handler=', ini_get('session.save_handler');
"""


@pytest.fixture(scope="module")
def php(host, hostvars):
    if "php_servers" not in hostvars.get("group_names", []):
        pytest.skip("not a php_servers host")
    command = php_request_command(host, SCRIPT_DIR + "/session.php", PHP)
    version = host.run("phpquery -V | sort -V | tail -1").stdout.strip()
    yield {"version": version, "socket": "/run/php/php%s-fpm.sock" % version, "command": command}
    host.run("rm -rf %s %s" % (SCRIPT_DIR, FCGI_CLIENT))


def get(host, php, cookie=""):
    out = host.run("%s '%s'" % (php["command"], cookie))
    assert out.rc == 0, out.stderr
    counted = re.search(r"count=(\d+) id=(\S+) handler=(\S+)", out.stdout)
    assert counted, out.stdout
    cookie_header = re.search(r"Set-Cookie: (PHPSESSID=[^;]+)(.*)", out.stdout)
    return int(counted.group(1)), counted.group(2), counted.group(3), cookie_header


def test_session_counter_lives_in_queue_db(host, php, redis, hostvars):
    count, sid, handler, set_cookie = get(host, php)
    assert (count, handler) == (1, "redis")
    assert set_cookie, "no session cookie"
    flags = set_cookie.group(2).lower()
    assert "httponly" in flags and "secure" in flags and "samesite=lax" in flags
    count, sid2, _, _ = get(host, php, set_cookie.group(1))
    assert (count, sid2) == (2, sid)
    database = str(hostvars.get("php_session_redis_database", 1))
    key = "PHPREDIS_SESSION:" + sid
    assert redis.run("queue", "-n", database, "EXISTS", key) == "1"
    ttl = int(redis.run("queue", "-n", database, "TTL", key))
    lifetime = int(hostvars.get("php_session_gc_maxlifetime", 3600))
    assert lifetime - 60 <= ttl <= lifetime
    assert redis.run("cache", "-n", database, "EXISTS", key) == "0", "a session must never be in the cache"
    assert host.run("find /var/lib/php/sessions -type f | wc -l").stdout.strip() == "0"


def test_strict_mode_refuses_unknown_session_ids(host, php):
    _, sid, _, _ = get(host, php, "PHPSESSID=attackerchosenid0123456789")
    assert sid != "attackerchosenid0123456789"


@destructive
def test_session_survives_restart_of_queue_and_fpm(host, php, instances):
    count, sid, _, set_cookie = get(host, php)
    cookie = set_cookie.group(1)
    host.run_test("systemctl restart %s php%s-fpm" % (instances["queue"]["service"], php["version"]))
    count_after, sid_after, _, _ = get(host, php, cookie)
    assert (count_after, sid_after) == (count + 1, sid)


def test_session_settings_file_is_private(host, php):
    ini = host.file("/etc/php/%s/fpm/conf.d/90-redis-sessions.ini" % php["version"])
    assert ini.user == "root" and ini.mode == 0o600


def test_fpm_config_and_log_show_no_warning_or_deprecation(host, php):
    """PHP 8.4 (Debian 13) deprecates settings such as session.sid_length: none is set."""
    tested = host.run("php-fpm%s -t" % php["version"])
    assert tested.rc == 0 and "test is successful" in tested.stderr + tested.stdout
    assert not re.search(r"(?i)deprecated|warning", tested.stderr + tested.stdout), tested.stderr
    log = host.run("cat /var/log/php%s-fpm.log" % php["version"]).stdout
    assert not re.search(r"(?i)deprecated|warning|error", log), log[-2000:]
