"""A hand-made setup (molecule/adopt/prepare.yml: the package's own instance with a
requirepass, PHP-FPM with the article's www.conf session lines, data in dbs 0-3)
after site.yml with redis_adopt: true. prepare.yml already proved, and left the
outputs here, that a run without redis_adopt is refused with nothing changed and
that a failed adoption gives the old instance back with every key."""
import json
import os
import pathlib
import shlex

import pytest

from helpers import INVENTORY, changed_count, php_session, playbook, session_command

EPHEMERAL = pathlib.Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
# redis_adopt_databases' default: the article's layout.
MAPPING = {"0": "cache", "1": "queue", "2": "queue", "3": "cache"}
ASIDE = "/var/backups/redis-vps-adopt"


def before(host):
    return json.loads(host.file("/root/adopt-before.json").content_string)


def snapshot(host, redis, instance, user="admin"):
    """Every key of the new instance (tests/adopt/snapshot.py, copied there by prepare.yml)."""
    password = redis.credentials["admin"]
    out = host.run("REDIS_PW=%s python3 /usr/local/lib/adopt_snapshot.py %s %s" % (
        shlex.quote(password), redis.socket(instance), user))
    assert out.rc == 0, "snapshot of %s failed: %s" % (instance, out.stderr.replace(password, "***"))
    return json.loads(out.stdout)


def folder(host, engine):
    found = host.run("ls -d %s/%s-* | tail -1" % (ASIDE, engine["engine"])).stdout.strip()
    assert found, "no folder of the adoption under %s" % ASIDE
    return found


def test_refused_run_named_redis_adopt_and_listed_what_it_found(hostvars):
    text = " ".join((EPHEMERAL / "refused.txt").read_text().split())
    assert "redis_adopt: %s already serves data" % hostvars["inventory_hostname"] in text
    assert "db 0: 35 keys, db 1: 100 keys, db 2: 2 keys, db 3: 10 keys" in text
    assert "www.conf line" in text and "php_value[session.save_path]" in text
    assert "Nothing was changed" in text
    assert hostvars["adopt_test_requirepass"] not in text


def test_failed_adoption_said_the_old_instance_runs_again(hostvars):
    text = " ".join((EPHEMERAL / "rolled_back.txt").read_text().split())
    assert "runs again with every key (147 keys)" in text
    assert hostvars["adopt_test_requirepass"] not in text


def test_every_key_moved_to_its_instance_with_its_ttl(host, redis):
    old = before(host)["databases"]
    new = {name: snapshot(host, redis, name)["databases"] for name in ("cache", "queue")}
    for db, keys in old.items():
        moved = new[MAPPING[db]].get(db, {})
        assert sorted(moved) == sorted(keys), "db %s: keys differ in %s" % (db, MAPPING[db])
        for key, was in keys.items():
            now = moved[key]
            assert now["type"] == was["type"], key
            if was["pttl"] == -1:
                assert now["pttl"] == -1, "%s gained a TTL" % key
            else:
                assert 0 < now["pttl"] <= was["pttl"], "%s: TTL %s, was %s" % (key, now["pttl"], was["pttl"])
            assert now.get("length") == was.get("length"), key
    # Nothing went where the mapping does not send it.
    assert set(new["cache"]) <= {"0", "3"} and set(new["queue"]) <= {"1", "2"}


def test_stream_keeps_its_consumer_group_and_pending_entry(host, redis):
    stream = snapshot(host, redis, "queue")["databases"]["2"]["jobs:stream"]
    assert stream["length"] == 3
    assert stream["groups"] == {"workers": {"pending": 1, "consumers": 1}}
    pending = redis.run("queue", "-n", "2", "XPENDING", "jobs:stream", "workers", "-", "+", "10")
    assert "worker-1" in pending


def test_logged_in_visitor_is_still_logged_in(host):
    cookie = host.file("/root/adopt-login-cookie").content_string.strip()
    _, count = php_session(host, "/var/www/adopt", cookie)
    assert count == 2, "the session made before the adoption was not found (count %d)" % count


def test_new_sessions_go_to_the_queue_not_the_cache(host, redis):
    sessions = int(redis.run("queue", "-n", "1", "DBSIZE"))
    host.run_test(session_command(host, "/var/www/adopt"))
    assert int(redis.run("queue", "-n", "1", "DBSIZE")) == sessions + 1
    assert int(redis.run("cache", "-n", "1", "DBSIZE")) == 0


def test_pool_session_lines_are_commented_out_and_a_copy_kept(host, engine):
    pool = host.run("ls /etc/php/*/fpm/pool.d/www.conf").stdout.strip()
    lines = [line for line in host.file(pool).content_string.splitlines() if "session." in line and "php_value[" in line]
    assert lines and all(line.startswith("; redis-vps adopt: ") for line in lines)
    copy = host.file("%s/pool-%s" % (folder(host, engine), pool.strip("/").replace("/", "_")))
    assert copy.exists and copy.mode == 0o600 and copy.user == "root"
    assert "\nphp_value[session.save_path]" in copy.content_string


def test_old_unit_is_stopped_disabled_and_masked(host, engine):
    unit = host.service(engine["engine"] + "-server")
    assert not unit.is_running
    assert host.run("systemctl is-enabled %s-server.service" % engine["engine"]).stdout.strip() == "masked"


def test_old_files_are_aside_root_only(host, engine, hostvars):
    where = host.file(folder(host, engine))
    assert where.mode == 0o700 and where.user == "root"
    for name in ("keys.jsonl", "%s.conf" % engine["engine"], "report.json"):
        f = host.file("%s/%s" % (where.path, name))
        assert f.exists and f.mode == 0o600 and f.user == "root", name
    persistence = hostvars.get("adopt_test_persistence", "")
    data = engine["data_root"]
    if "appendonly yes" in persistence:
        assert host.file(where.path + "/data-appendonlydir").is_directory
        assert not host.file(data + "/appendonlydir").exists
    if 'save ""' not in persistence:            # Debian's default snapshots: dump.rdb written at the stop
        assert host.file(where.path + "/data-dump.rdb").exists
    assert not host.file(data + "/dump.rdb").exists


def test_report_counts_every_database_found_and_moved(host, engine):
    report = json.loads(host.file(folder(host, engine) + "/report.json").content_string)
    counts = {db: (row["found"], row["moved"], row["instance"]) for db, row in report["databases"].items()}
    assert counts == {"0": (35, 35, "cache"), "1": (100, 100, "queue"), "2": (2, 2, "queue"), "3": (10, 10, "cache")}


def test_cache_keeps_the_old_password_for_the_apps(host, hostvars, credentials, engine):
    assert credentials["cache"] == hostvars["adopt_test_requirepass"]
    out = host.run("REDISCLI_AUTH=%s %s --no-auth-warning -h 127.0.0.1 -p 6379 -n 0 GET cache:static:1" % (
        shlex.quote(hostvars["adopt_test_requirepass"]), engine["cli"]))
    assert out.stdout.strip() == "forever-1"


@pytest.mark.skipif(not INVENTORY, reason="reruns site.yml: molecule's inventory only")
def test_zz_rerun_without_the_flag_changes_nothing(tmp_path):
    """The scenario's idempotence check: every host at once, redis_adopt false."""
    rc, out = playbook(extra_vars={"redis_adopt": False}, tmp_path=tmp_path)
    assert rc == 0, out[-3000:]
    assert changed_count(out) == 0, out.split("PLAY RECAP")[-1]
