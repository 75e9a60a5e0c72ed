import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.redis_vps.server.plugins.filter.redis_plan import (
    redis_bytes, redis_engine_layout, redis_exporter_records, redis_instance_records, redis_memory_budget, redis_memory_plan)


@pytest.mark.parametrize("text, expected", [
    ("268435456", 268435456), (268435456, 268435456),
    ("1k", 1000), ("1kb", 1024), ("256m", 256_000_000), ("256mb", 256 * 2 ** 20),
    ("1g", 10 ** 9), ("1GB", 2 ** 30), (" 64 mb ", 64 * 2 ** 20),
])
def test_sizes_use_redis_units(text, expected):
    assert redis_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "-1mb", "1.5gb", "256 MiB", "1tb", None, True, [], "0x10"])
def test_bad_sizes_are_refused_or_defaulted(bad):
    with pytest.raises(AnsibleFilterError, match="not a Redis size"):
        redis_bytes(bad)
    assert redis_bytes(bad, -1) == -1


@pytest.mark.parametrize("ram, cache, queue", [(960, "240mb", "120mb"), (1024, "256mb", "128mb"),
                                               (2000, "500mb", "250mb"), (4000, "1000mb", "500mb")])
def test_memory_plan(ram, cache, queue):
    assert redis_memory_plan(ram) == {"cache": cache, "queue": queue}


@pytest.mark.parametrize("ram", [512, 960, 1024, 2048, 3900, 4096])
def test_plan_fits_with_the_queue_fork_and_leaves_half_the_ram(ram):
    plan = {k: redis_bytes(v) for k, v in redis_memory_plan(ram).items()}
    worst_case = plan["cache"] + 2 * plan["queue"]
    assert worst_case <= ram * 2 ** 20 // 2
    assert worst_case <= redis_memory_budget(ram)


def test_engine_layouts_follow_the_engines_name():
    redis, valkey = redis_engine_layout("redis"), redis_engine_layout("valkey")
    assert redis["packages"] == ["redis-server", "redis-tools"] and redis["single_unit"] == "redis-server.service"
    assert valkey["packages"] == ["valkey-server", "valkey-tools"] and valkey["single_unit"] == "valkey-server.service"
    assert (valkey["user"], valkey["cli"], valkey["conf_dir"], valkey["log_dir"]) == \
        ("valkey", "valkey-cli", "/etc/valkey", "/var/log/valkey")
    assert (redis["min_debian"], valkey["min_debian"]) == (12, 13)
    with pytest.raises(AnsibleFilterError, match="unknown Redis engine 'keydb'"):
        redis_engine_layout("keydb")


@pytest.mark.parametrize("engine", ["redis", "valkey"])
def test_instance_records_carry_the_engines_paths_and_runtime_bytes(engine):
    own = {"cache": {"port": 6379, "maxmemory": "256mb", "save": ""},
           "queue": {"port": 6380, "maxmemory": "128mb", "save": "3600 1"}}
    records = redis_instance_records(own, {"hz": 20, "port": 1}, engine)
    assert [r["name"] for r in records] == ["cache", "queue"]
    queue = records[1]
    assert queue["service"] == "%s-server@queue.service" % engine
    assert queue["conf"] == "/etc/%s/%s-queue.conf" % (engine, engine)
    assert queue["users_conf"] == "/etc/%s/%s-queue.acl" % (engine, engine)
    assert (queue["user"], queue["group"], queue["cli"]) == (engine, engine, "%s-cli" % engine)
    assert queue["config"]["unixsocket"] == "/run/%s-queue/%s-server.sock" % (engine, engine)
    assert queue["config"]["logfile"] == "/var/log/%s/%s-server-queue.log" % (engine, engine)
    assert queue["config"]["dir"] == "/var/lib/%s/queue" % engine
    # Own settings win over common ones; every value is a string as CONFIG GET shows it.
    assert queue["config"]["port"] == "6380" and queue["config"]["hz"] == "20"
    assert queue["config"]["maxmemory"] == "128mb" and queue["runtime"]["maxmemory"] == str(128 * 2 ** 20)
    assert records[0]["config"]["save"] == ""


def test_valkey_records_leave_out_what_valkey_no_longer_has():
    common = {"dynamic-hz": "yes", "hz": "20"}
    own = {"cache": {"maxmemory": "1mb"}}
    assert "dynamic-hz" in redis_instance_records(own, common, "redis")[0]["runtime"]
    valkey = redis_instance_records(own, common, "valkey")[0]
    assert "dynamic-hz" not in valkey["config"] and "dynamic-hz" not in valkey["runtime"]


def test_exporter_fields_follow_the_engine_and_port():
    own = {"cache": {"maxmemory": "1mb"}, "queue": {"maxmemory": "1mb"}}
    assert "exporter" not in redis_instance_records(own, {}, "redis")[0]
    queue = redis_exporter_records({"cache": 9121, "queue": "9122"}, "valkey")["queue"]
    assert queue == {
        "name": "queue", "engine": "valkey",
        "service": "valkey-exporter@queue.service", "port": 9122,
        "socket": redis_instance_records(own, {}, "valkey")[1]["config"]["unixsocket"], "group": "valkey",
        "env_file": "/etc/valkey/valkey-queue.exporter.env",
        "password_file": "/etc/valkey/valkey-queue.exporter.json",
        "unit_file": "/etc/systemd/system/valkey-exporter@.service",
        "nft_file": "/etc/nftables.d/valkey-exporter-queue.nft",
    }


def test_only_instances_with_persistence_get_backups_named_after_the_project_and_engine():
    own = {"cache": {"maxmemory": "1mb", "appendonly": "no", "save": ""},
           "queue": {"maxmemory": "1mb", "appendonly": "yes", "save": "3600 1"}}
    cache, queue = redis_instance_records(own, {}, "valkey")
    assert "backup" not in cache
    assert queue["backup"] == {
        "dir": "/var/backups/valkey/queue", "status_file": "/var/backups/valkey/queue/status.json",
        "config_file": "/etc/redis-vps-backup/queue.json",
        "service": "redis-vps-backup@queue.service", "timer": "redis-vps-backup@queue.timer",
        "server_bin": "/usr/bin/valkey-server", "check_rdb": "/usr/bin/valkey-check-rdb",
        "exec_start": "/usr/bin/valkey-server /etc/valkey/valkey-queue.conf --supervised systemd --daemonize no"}
    snapshots_only = redis_instance_records({"q": {"maxmemory": "1mb", "appendonly": "no", "save": "60 1"}}, {}, "redis")
    assert snapshots_only[0]["backup"]["dir"] == "/var/backups/redis/q"
