"""Jinja filters that plan the Redis instances: sizes, the memory plan, the
engine's layout on Debian, and one record per instance.

Redis reads sizes with decimal and binary units: 1k = 1000, 1kb = 1024,
1m = 1000000, 1mb = 1048576, 1g = 10**9, 1gb = 2**30 (units case-insensitive).
Comparing with a running server is only sound in bytes, hence redis_bytes.
"""
import re

from ansible.errors import AnsibleFilterError

_SIZE = re.compile(r"^\s*(\d+)\s*(k|kb|m|mb|g|gb)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "k": 1000, "kb": 1024,
    "m": 1000 ** 2, "mb": 1024 ** 2,
    "g": 1000 ** 3, "gb": 1024 ** 3,
}
_NO_DEFAULT = object()

# The memory plan (docs in roles/redis/defaults/main.yml and docs/instances.md):
# the cache gets a quarter of the RAM, the queue an eighth; the queue's fork
# for BGSAVE / AOF rewrite may copy up to its whole dataset, so the worst case
# is 1/4 + 2 * 1/8 = half of the RAM, and the other half stays for the OS,
# PHP-FPM and the application.
PLAN_CACHE_PERCENT = 25
PLAN_QUEUE_PERCENT = 12.5
# Largest share of RAM that user-chosen sizes may take, counting the queue twice.
PLAN_LIMIT_PERCENT = 75


def redis_bytes(value, default=_NO_DEFAULT):
    """'256mb' -> 268435456. Invalid input raises, or returns `default` if given."""
    match = _SIZE.match(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not match:
        if default is not _NO_DEFAULT:
            return default
        raise AnsibleFilterError(
            "%r is not a Redis size (a whole number of bytes, or with a unit "
            "k, kb, m, mb, g, gb, for example 256mb)" % (value,))
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def redis_memory_plan(host_mb):
    """Default maxmemory of each instance for a host with `host_mb` MB of RAM."""
    host_mb = int(host_mb)
    return {
        "cache": "%dmb" % (host_mb * PLAN_CACHE_PERCENT // 100),
        "queue": "%dmb" % int(host_mb * PLAN_QUEUE_PERCENT // 100),
    }


def redis_memory_budget(host_mb):
    """Bytes that cache + 2 x queue may take on a host with `host_mb` MB."""
    return int(host_mb) * 1024 * 1024 * PLAN_LIMIT_PERCENT // 100


# Replication buffers of an HA primary (redis_ha), sized from the queue's maxmemory: the
# backlog lets a replica that was briefly away resync in part; each replica's output buffer
# (writes queued for it during a full sync) is cut at its hard limit, or after 60 s above
# its soft one, and that replica resyncs. The primary may hold the backlog plus every
# replica's buffer at once: the memory plan counts them.
REPL_BACKLOG_FRACTION = 8        # backlog = queue / 8, at least 1 MB
REPLICA_HARD_FRACTION = 4        # per replica: hard limit queue / 4 (at least 8 MB), soft queue / 8
PUBSUB_LIMITS = "pubsub 33554432 8388608 60"      # Redis's defaults, as CONFIG GET shows them


def redis_replication_plan(queue_maxmemory, replicas):
    """The HA primary's replication settings for a queue of `queue_maxmemory` with `replicas`
    replicas, as CONFIG GET shows them, and `bytes`, the most they hold at once."""
    queue = redis_bytes(queue_maxmemory)
    backlog = max(1024 ** 2, queue // REPL_BACKLOG_FRACTION)
    hard = max(8 * 1024 ** 2, queue // REPLICA_HARD_FRACTION)
    soft = max(4 * 1024 ** 2, queue // (2 * REPLICA_HARD_FRACTION))
    return {
        "repl-backlog-size": str(backlog),
        "client-output-buffer-limit": "normal 0 0 0 slave %d %d 60 %s" % (hard, soft, PUBSUB_LIMITS),
        "bytes": backlog + int(replicas) * hard,
    }


# Engines from Debian's archive and the first Debian release that ships each one
# (Valkey is in Debian 12 only through bookworm-backports: not supported).
ENGINE_MIN_DEBIAN = {"redis": 12, "valkey": 13}
# Settings an engine no longer has: Valkey 8.1 accepts dynamic-hz in a file but
# ignores it and hides it from CONFIG GET, so it is not written for Valkey.
ENGINE_DROPPED_SETTINGS = {"redis": (), "valkey": ("dynamic-hz",)}


def redis_engine_layout(engine):
    """Where Debian's packages of `engine` put everything. Valkey's packages mirror
    Redis's with the engine's name in every path, unit, user and command."""
    if engine not in ENGINE_MIN_DEBIAN:
        raise AnsibleFilterError("unknown Redis engine %r (one of: %s)" % (engine, ", ".join(ENGINE_MIN_DEBIAN)))
    return {
        "engine": engine,
        "packages": ["%s-server" % engine, "%s-tools" % engine],
        # The package's single instance, masked before the package is installed.
        "single_unit": "%s-server.service" % engine,
        "user": engine,
        "group": engine,
        "cli": "%s-cli" % engine,
        "conf_dir": "/etc/%s" % engine,
        "data_root": "/var/lib/%s" % engine,
        "log_dir": "/var/log/%s" % engine,
        "min_debian": ENGINE_MIN_DEBIAN[engine],
    }


def redis_instance_socket(engine, name):
    """The instance's unix socket (its run folder is the unit's RuntimeDirectory)."""
    return "/run/%s-%s/%s-server.sock" % (engine, name, engine)


def redis_instance_records(own_settings, common, engine):
    """One record per instance, from `own_settings` (name -> its own settings) merged
    over `common`, with the engine's paths:

    name, engine, service (Debian's template unit), conf and users_conf (its aclfile),
    user/group/cli of the engine, config (what the template writes) and runtime (the
    same settings as CONFIG GET shows them: maxmemory in bytes), which the
    redis_instance module compares with the running server; for an instance with persistence (AOF or RDB
    snapshots), its backups (roles/redis_backup): dir, status_file, config_file, service and
    timer (units named after the project, redis-vps-backup@NAME), and what a restore runs:
    the server's exec_start as Debian's unit has it, server_bin and check_rdb.
    """
    layout = redis_engine_layout(engine)
    records = []
    for name, own in own_settings.items():
        socket = redis_instance_socket(engine, name)
        config = dict(common)
        config.update(own)
        config.update({
            "unixsocket": socket,
            "pidfile": socket[:-len(".sock")] + ".pid",
            "logfile": "%s/%s-server-%s.log" % (layout["log_dir"], engine, name),
            "dir": "%s/%s" % (layout["data_root"], name),
        })
        config = {key: str(value) for key, value in config.items() if key not in ENGINE_DROPPED_SETTINGS[engine]}
        runtime = dict(config, maxmemory=str(redis_bytes(config["maxmemory"])))
        records.append({
            "name": name,
            "engine": engine,
            "service": "%s-server@%s.service" % (engine, name),
            "conf": "%s/%s-%s.conf" % (layout["conf_dir"], engine, name),
            "users_conf": "%s/%s-%s.acl" % (layout["conf_dir"], engine, name),
            "user": layout["user"],
            "group": layout["group"],
            "cli": layout["cli"],
            "config": config,
            "runtime": runtime,
        })
        if config.get("appendonly") == "yes" or config.get("save"):
            records[-1]["backup"] = {
                "dir": "/var/backups/%s/%s" % (engine, name),
                "status_file": "/var/backups/%s/%s/status.json" % (engine, name),
                "config_file": "/etc/redis-vps-backup/%s.json" % name,
                "service": "redis-vps-backup@%s.service" % name,
                "timer": "redis-vps-backup@%s.timer" % name,
                "server_bin": "/usr/bin/%s-server" % engine,
                "check_rdb": "/usr/bin/%s-check-rdb" % engine,
                "exec_start": "/usr/bin/%s-server %s --supervised systemd --daemonize no" % (
                    engine, records[-1]["conf"]),
            }
    return records


def redis_exporter_records(ports, engine):
    """name -> the Prometheus exporter of that instance (roles/redis_exporter), for each
    instance of `ports` (name -> the exporter's port): name, service, port, socket (the
    instance's), group (the engine's, which may use the socket), env_file, password_file (the
    monitor password for the instance's own socket only: root only), unit_file (one
    template unit for every instance) and nft_file (its firewall fragment)."""
    layout = redis_engine_layout(engine)
    return {
        name: {
            "name": name,
            "engine": engine,
            "service": "%s-exporter@%s.service" % (engine, name),
            "port": int(port),
            "socket": redis_instance_socket(engine, name),
            "group": layout["group"],
            "env_file": "%s/%s-%s.exporter.env" % (layout["conf_dir"], engine, name),
            "password_file": "%s/%s-%s.exporter.json" % (layout["conf_dir"], engine, name),
            "unit_file": "/etc/systemd/system/%s-exporter@.service" % engine,
            "nft_file": "/etc/nftables.d/%s-exporter-%s.nft" % (engine, name),
        }
        for name, port in ports.items()
    }


class FilterModule:
    def filters(self):
        return {
            "redis_bytes": redis_bytes,
            "redis_memory_plan": redis_memory_plan,
            "redis_memory_budget": redis_memory_budget,
            "redis_replication_plan": redis_replication_plan,
            "redis_engine_layout": redis_engine_layout,
            "redis_instance_records": redis_instance_records,
            "redis_exporter_records": redis_exporter_records,
        }
