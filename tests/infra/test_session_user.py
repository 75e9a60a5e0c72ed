"""PHP sessions' own ACL user (issue 17, item 4): PHP-FPM logs in to the queue as `session`, which
may touch phpredis' session keys only; the password PHP prints in its warnings (session.save_path)
when the queue is unreachable lands in PHP-FPM's own log (root only), in no file another user can
read, not in the journal, not in what the web server receives. (After test_php_sessions.py, whose
check of FPM's log for warnings must come first.)"""
import re
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


@destructive
def test_a_host_of_the_previous_release_moves_to_the_session_user_without_a_failed_request(host, hostvars, php, redis,
                                                                                            instances):
    """The previous release's state, made on one host (no `session` user, FPM logging in with the queue's
    password, neither the store nor the controller holding a session password), then site.yml under a loop
    of session requests: the user is added live, FPM switches with a graceful reload, no request fails."""
    from helpers import INVENTORY, REPO, playbook  # noqa: F401  (only this test runs a playbook)
    import pathlib
    if not INVENTORY or hostvars["inventory_hostname"] != sorted(hostvars["groups"]["php_servers"])[0]:
        pytest.skip("once per scenario, on its first PHP host")
    if "redis_ha" in hostvars.get("group_names", []):
        pytest.skip("not on the replicated queue's hosts")
    name = hostvars["inventory_hostname"]
    ini = "/etc/php/%s/fpm/conf.d/90-redis-sessions.ini" % php
    users = instances["queue"]["users_conf"]
    # (the password is read from the store on the host: on no command line)
    host.run_test("python3 - <<'EOF'\nimport re\nq = open('/etc/redis-vps/credentials/queue').read().strip()\n"
                  "t = open(%r).read()\nt = re.sub(r'auth\\[\\]=session&auth\\[\\]=[^&\"]*', 'auth=' + q, t)\n"
                  "t = t.replace('fastcgi.logging = 0\\n', '')\nopen(%r, 'w').write(t)\n"
                  "u = open(%r).read()\nopen(%r, 'w').write(''.join(l for l in u.splitlines(True) if not l.startswith('user session ')))\n"
                  "EOF" % (ini, ini, users, users))
    redis.run("queue", "ACL", "DELUSER", "session")
    host.run_test("rm -f /etc/redis-vps/credentials/session && systemctl reload php%s-fpm" % php)
    controller = pathlib.Path(hostvars["redis_credentials_dir"]) / name / "session_password"
    controller.unlink()
    command = session_command(host, "/var/www/redis-vps-migration")
    first = host.run(command).stdout
    assert "count=1" in first, first
    cookie = re.search(r"Set-Cookie: (PHPSESSID=[^;]+)", first).group(1)
    run_id = redis.info("queue", "server")["run_id"]
    fpm = host.check_output("pgrep -f '^php-fpm: master'")
    work = "/root/redis-vps-migration"
    host.run_test("rm -rf %s && mkdir -p %s" % (work, work))
    host.run_test("nohup sh -c 'while [ ! -f %s/stop ]; do if %s %s | grep -q count=; then echo ok; else echo failed; fi; done "
                  ">> %s/requests; touch %s/done' > /dev/null 2>&1 &" % (work, command, shlex.quote(cookie), work, work))
    try:
        rc, out = playbook(limit=name)
    finally:
        host.run_test("touch %s/stop; for i in $(seq 60); do [ -f %s/done ] && break; sleep 0.5; done" % (work, work))
    assert rc == 0, out[-3000:]
    requests = host.file(work + "/requests").content_string.split()
    assert len(requests) > 5 and "failed" not in requests, "%d of %d session requests failed" % (
        requests.count("failed"), len(requests))
    assert "auth[]=session&auth[]=" in host.run("cat %s" % ini).stdout
    assert redis.run("queue", "ACL", "GETUSER", "session").startswith("flags")
    assert redis.info("queue", "server")["run_id"] == run_id, "the queue was restarted"
    assert host.check_output("pgrep -f '^php-fpm: master'") == fpm, "PHP-FPM was restarted, not reloaded"
    counted = re.search(r"count=(\d+)", host.run("%s %s" % (command, shlex.quote(cookie))).stdout)
    assert counted and int(counted.group(1)) == len(requests) + 2, "the session lost requests"
