"""PHP sessions' own ACL user (issue 17, item 4): PHP-FPM logs in to the queue as `session`, which
may touch phpredis' session keys only; the password PHP prints in its warnings (session.save_path)
when the queue is unreachable lands in PHP-FPM's own log (root only), in no file another user can
read, not in the journal, not in what the web server receives. (After test_php_sessions.py, whose
check of FPM's log for warnings must come first.)"""
import shlex
import time

import pytest
from helpers import destructive, session_command

SECRET_DIR = "/var/tmp/redis-vps-hygiene"


@pytest.fixture(scope="module")
def php(host, hostvars):
    if "php_servers" not in hostvars.get("group_names", []):
        pytest.skip("not a php_servers host")
    return host.run("phpquery -V | sort -V | tail -1").stdout.strip()


def test_fpm_logs_in_as_the_session_user_not_with_the_queue_password(host, php, credentials):
    ini = host.run("cat /etc/php/%s/fpm/conf.d/90-redis-sessions.ini" % php).stdout
    assert "auth[]=session&auth[]=" in ini
    assert credentials["queue"] not in ini
    assert "fastcgi.logging = 0" in ini


def test_the_session_user_reaches_session_keys_only(redis, credentials):
    password = credentials["session"]

    def as_session(*args):
        return redis.run("queue", *args, user="session", password=password, check=False)
    assert as_session("SELECT", "1") == "OK"
    assert as_session("SET", "PHPREDIS_SESSION:acl-test", "x", "EX", "60") == "OK"
    assert as_session("GET", "PHPREDIS_SESSION:acl-test") == "x"
    assert as_session("DEL", "PHPREDIS_SESSION:acl-test") == "1"
    redis.run("queue", "SET", "acl-test:other", "kept")
    for args in (("GET", "acl-test:other"), ("SET", "acl-test:other", "x"), ("DEL", "acl-test:other"), ("KEYS", "*"),
                 ("SCAN", "0"), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("ACL", "LIST"),
                 ("EVAL", "return redis.call('GET', KEYS[1])", "1", "acl-test:other"), ("PUBLISH", "x", "y")):
        assert "NOPERM" in as_session(*args), args
    assert redis.run("queue", "GET", "acl-test:other") == "kept"
    redis.run("queue", "DEL", "acl-test:other")


def readable_by(host, user, secret):
    """Files under the usual places that `user` can read and that hold `secret` (grep run as that user,
    the secret in a file of its own: never on a command line)."""
    folder = "%s-%s" % (SECRET_DIR, user)
    host.run_test("install -d -m 0700 -o %s %s" % (user, folder))
    host.run_test("umask 077; printf '%%s\\n' %s > %s/pattern; chown %s %s/pattern" % (
        shlex.quote(secret), folder, user, folder))
    try:
        out = host.run("runuser -u %s -- grep -rlsF --exclude-dir=%s -f %s/pattern /var/log /var/tmp /tmp /run /etc "
                       "/var/lib/php /var/www /home /root" % (user, folder.rsplit("/", 1)[1], folder))
        return out.stdout.split()
    finally:
        host.run("rm -rf %s" % folder)


@destructive
def test_warnings_with_the_session_password_stay_in_fpm_s_root_only_log(host, php, hostvars, instances, credentials, redis):
    if "redis_ha" in hostvars.get("group_names", []):
        pytest.skip("the replicated queue's hosts: stopping a queue is a failover (tests/ha)")
    secret = credentials["session"]
    log = "/var/log/php%s-fpm.log" % php
    command = session_command(host, "/var/www/redis-vps-hygiene")
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    host.run_test("systemctl stop %s" % instances["queue"]["service"])
    try:
        answer = host.run(command)
    finally:
        host.run_test("systemctl start %s" % instances["queue"]["service"])
    deadline = time.monotonic() + 30
    while redis.run("queue", "PING", check=False) != "PONG":
        assert time.monotonic() < deadline, "the queue did not come back"
        time.sleep(0.5)
    # PHP did print the path, password included, where it may: FPM's log, root's only.
    logged = host.run("grep -cF -f /etc/redis-vps/credentials/session %s" % log).stdout.strip()
    assert int(logged or 0) > 0, "no warning with the save path in %s: the test proves nothing" % log
    fpm_log = host.file(log)
    assert fpm_log.user == "root" and fpm_log.mode & 0o077 == 0, oct(fpm_log.mode)
    # Nowhere else: not in what the web server gets (FastCGI's stderr), no file www-data or nobody
    # can read, not in the journal.
    assert secret not in answer.stdout + answer.stderr
    for user in ("www-data", "nobody"):
        assert readable_by(host, user, secret) == [], user
    journal = host.run("journalctl --no-pager -o cat --since %s | grep -cF -f /etc/redis-vps/credentials/session"
                       % shlex.quote(since)).stdout.strip()
    assert journal in ("", "0"), "the password is in the journal"
    # Sessions work again.
    assert "count=1" in host.run(command).stdout
