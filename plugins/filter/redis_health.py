"""Jinja filters for the health report (playbooks/status.yml): what the seed
article's "Monitoring Redis in Production" tells an operator to watch, computed
from one INFO ALL (plus MEMORY DOCTOR and SLOWLOG LEN) per instance, and the
verdicts it draws. Pure functions of the module's results, unit-tested.
"""

import time

# The article's thresholds.
HIT_RATE_WARN = 0.80          # below 80 %, the cache is misconfigured (aim above 90 %)
HIT_RATE_MIN_LOOKUPS = 1000   # fewer hits + misses than this is too little traffic to judge
QUEUE_MEMORY_WARN = 0.80      # the queue never evicts: warn well before it refuses writes


def _int(info, key, default=0):
    try:
        return int(float(info.get(key, default)))
    except (TypeError, ValueError):
        return default


def _float(info, key, default=0.0):
    try:
        return float(info.get(key, default))
    except (TypeError, ValueError):
        return default


def human(size):
    """Bytes as Redis's own *_human fields show them (1.50M), in one unit system."""
    size = float(size)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return ("%d%s" % (size, unit)) if unit == "B" else ("%.2f%s" % (size, unit))
        size /= 1024
    return "%.2fG" % size


def keyspace(info):
    """{'db0': 12, 'db3': 4} from INFO keyspace (db0:keys=12,expires=0,avg_ttl=0)."""
    out = {}
    for key, value in info.items():
        if key.startswith("db") and key[2:].isdigit() and "keys=" in value:
            fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            out[key] = int(fields.get("keys", 0))
    return out


def oom_rejections(info):
    """Commands refused with OOM (INFO errorstats: errorstat_OOM:count=N)."""
    value = info.get("errorstat_OOM", "")
    fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    return int(fields.get("count", 0))


def doctor_verdict(text):
    """MEMORY DOCTOR's long, chatty answer as a one-line verdict."""
    text = " ".join((text or "").split())
    if not text:
        return "-"
    if "can't find any memory issue" in text:
        return "no memory issue found"
    if "empty or is using very little memory" in text:
        return "too little data to judge"
    first = text.split(". ", maxsplit=1)[0]
    return "issues found: " + (first if len(first) <= 80 else first[:77] + "...") + " (run MEMORY DOCTOR)"


def replication(info):
    """The replication part of INFO: a primary's replicas with their lag, or a replica's
    primary and link; None for an instance that is neither (no replica, no primary)."""
    if info.get("role", "master") == "master":
        replicas = []
        for key, value in sorted(info.items()):
            if key.startswith("slave") and key[5:].isdigit():
                fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
                replicas.append({"address": "%s:%s" % (fields.get("ip"), fields.get("port")),
                                 "state": fields.get("state"), "lag": int(fields.get("lag", 0))})
        if not replicas:
            return None
        return {"role": "primary", "replicas": replicas}
    return {"role": "replica", "primary": "%s:%s" % (info.get("master_host"), info.get("master_port")),
            "link": info.get("master_link_status"), "last_io_seconds": _int(info, "master_last_io_seconds_ago", -1)}


def backup_health(record, status, now):
    """An instance's backups from the status file the backup program writes (roles/redis_backup),
    or None for an instance without persistence (it has no backups)."""
    if not record.get("backup"):
        return None
    status = status or {}
    success, failure = status.get("last_success"), status.get("last_failure")
    offsite = status.get("offsite") or {}
    return {
        "dir": record["backup"].get("dir"),
        "last_snapshot": status.get("last_snapshot"),
        "age_seconds": now - int(success) if success else None,
        "warn_after_seconds": status.get("warn_after_seconds"),
        "local_snapshots": status.get("local_snapshots"),
        # The newest run failed (a failure after the last success).
        "failed": bool(failure and (not success or int(failure) > int(success))),
        "last_error": status.get("last_error"),
        # The newest run was refused for lack of room (redis_backup_min_free_mb), or the disk filled.
        "no_room": status.get("no_room") if failure and (not success or int(failure) > int(success)) else None,
        "offsite_repository": status.get("offsite_repository"),
        "offsite_snapshot": offsite.get("snapshot"),
        "offsite_age_seconds": now - int(offsite["last_success"]) if offsite.get("last_success") else None,
    }


def redis_health(result, now=None):
    """One instance's health from the redis_instance module's result (report: true).

    `result` has `item` (the instance record), and when the instance answered,
    `info` (INFO ALL as a dict), `memory_doctor` and `slowlog_len`.
    """
    record = result.get("item") or result.get("instance") or {}
    name = record.get("name", "?")
    exporter = record.get("exporter")
    metrics = None
    if exporter:
        unit = (result.get("units") or {}).get(exporter["service"], {})
        metrics = "%s on port %d: %s" % (exporter["service"], exporter["port"],
                                         "running" if unit.get("active") else "NOT RUNNING")
    persistent = record.get("config", {}).get("appendonly") == "yes" or bool(record.get("config", {}).get("save"))
    info = result.get("info") or {}
    if not info:
        return {"name": name, "up": False, "persistent": persistent, "metrics": metrics,
                "error": result.get("msg") or "no answer on %s" % record.get("config", {}).get("unixsocket"),
                "verdicts": [("CRIT", "%s is DOWN: %s" % (name, result.get("msg") or "it does not answer"))]}
    now = int(now if now is not None else time.time())
    backup = backup_health(record, result.get("backup"), now)
    engine = info.get("server_name", "redis")
    used, maxmemory = _int(info, "used_memory"), _int(info, "maxmemory")
    hits, misses = _int(info, "keyspace_hits"), _int(info, "keyspace_misses")
    lookups = hits + misses
    health = {
        "name": name,
        "up": True,
        "persistent": persistent,
        "engine": engine,
        "version": info.get(engine + "_version", info.get("redis_version")),
        "uptime_seconds": _int(info, "uptime_in_seconds"),
        "role": {"master": "primary", "slave": "replica"}.get(info.get("role", "master"), info.get("role")),
        "used_memory": used,
        "maxmemory": maxmemory,
        "memory_ratio": round(used / maxmemory, 4) if maxmemory else None,
        "peak_memory": _int(info, "used_memory_peak"),
        "fragmentation_ratio": _float(info, "mem_fragmentation_ratio"),
        "maxmemory_policy": info.get("maxmemory_policy"),
        "evicted_keys": _int(info, "evicted_keys"),
        "expired_keys": _int(info, "expired_keys"),
        "keyspace_hits": hits,
        "keyspace_misses": misses,
        "hit_rate": round(hits / lookups, 4) if lookups else None,
        "connected_clients": _int(info, "connected_clients"),
        "blocked_clients": _int(info, "blocked_clients"),
        "rejected_connections": _int(info, "rejected_connections"),
        "ops_per_sec": _int(info, "instantaneous_ops_per_sec"),
        "keys": keyspace(info),
        "oom_rejections": oom_rejections(info),
        "aof_enabled": info.get("aof_enabled") == "1",
        "aof_last_write_status": info.get("aof_last_write_status"),
        "aof_last_bgrewrite_status": info.get("aof_last_bgrewrite_status"),
        "aof_rewrite_in_progress": info.get("aof_rewrite_in_progress") == "1",
        "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
        "rdb_last_save_age_seconds": now - _int(info, "rdb_last_save_time", now),
        "rdb_changes_since_last_save": _int(info, "rdb_changes_since_last_save"),
        "slowlog_len": result.get("slowlog_len"),
        "memory_doctor": doctor_verdict(result.get("memory_doctor")),
        # Settings that differ from what the role would set (a rerun changes them).
        "drift": sorted(result.get("applied") or {}) + list(result.get("restart_required") or []),
        "metrics": metrics,
        # The server still runs a binary that a package upgrade replaced on disk (redis_instance).
        "binary_replaced": "upgraded" in (result.get("restart_required") or []),
        "replication": replication(info),


        "backup": backup,
    }
    health["verdicts"] = verdicts(health)
    return health


def verdicts(h):
    """(level, text) pairs: OK, WARN or CRIT, with what to do about it."""
    out = []
    name = h["name"]
    if name == "queue" or h["persistent"]:
        if h["evicted_keys"]:
            out.append(("CRIT", "%s evicted %d keys: jobs or sessions were dropped; keep maxmemory-policy noeviction "
                                "and raise redis_%s_maxmemory" % (name, h["evicted_keys"], name)))
        if h["oom_rejections"]:
            out.append(("CRIT", "%s refused %d writes with OOM: it is full; raise redis_%s_maxmemory or drain it"
                                % (name, h["oom_rejections"], name)))
        if h["memory_ratio"] is not None and h["memory_ratio"] > QUEUE_MEMORY_WARN:
            out.append(("WARN", "%s uses %.0f%% of its maxmemory (above %.0f%%): it refuses writes at 100%%; "
                                "raise redis_%s_maxmemory or drain it"
                                % (name, 100 * h["memory_ratio"], 100 * QUEUE_MEMORY_WARN, name)))
    if h["rdb_last_bgsave_status"] not in (None, "ok"):
        out.append(("CRIT", "%s: the last RDB snapshot failed; see its log (disk full? fork refused?)" % name))
    if h["aof_enabled"] and h["aof_last_write_status"] not in (None, "ok"):
        out.append(("CRIT", "%s: the last AOF write failed; see its log (disk full?)" % name))
    if h["aof_enabled"] and h["aof_last_bgrewrite_status"] not in (None, "ok"):
        out.append(("WARN", "%s: the last AOF rewrite failed; see its log" % name))
    if name == "cache" and not h["persistent"]:
        lookups = h["keyspace_hits"] + h["keyspace_misses"]
        if lookups >= HIT_RATE_MIN_LOOKUPS and h["hit_rate"] < HIT_RATE_WARN:
            out.append(("WARN", "cache hit rate %.1f%% is below %.0f%%: the cache is too small for its keys, or keys "
                                "expire before they are read again; raise redis_cache_maxmemory or review TTLs"
                                % (100 * h["hit_rate"], 100 * HIT_RATE_WARN)))
        elif lookups >= HIT_RATE_MIN_LOOKUPS:
            out.append(("OK", "cache hit rate %.1f%% (at least %.0f%%)" % (100 * h["hit_rate"], 100 * HIT_RATE_WARN)))
        else:
            out.append(("OK", "cache hit rate not judged yet: %d lookups since start (%d needed)"
                              % (lookups, HIT_RATE_MIN_LOOKUPS)))
    rep = h.get("replication") or {}
    if rep.get("role") == "replica" and rep.get("link") != "up":
        out.append(("CRIT", "%s: the link to the primary %s is %s" % (name, rep["primary"], rep.get("link"))))
    for replica in rep.get("replicas", []):
        if replica["state"] != "online" or replica["lag"] > 5:
            out.append(("WARN", "%s: replica %s is %s, %d s behind" % (name, replica["address"], replica["state"], replica["lag"])))

    backup = h.get("backup")
    if backup and backup.get("no_room"):
        out.append(("CRIT", "%s: backups are refused for lack of room: %s" % (name, backup["no_room"])))
    elif backup and backup["failed"]:
        out.append(("CRIT", "%s: the last backup failed: %s; see journalctl -u redis-vps-backup@%s"
                            % (name, backup["last_error"], name)))
    elif backup and backup["age_seconds"] is not None and backup["warn_after_seconds"] \
            and backup["age_seconds"] > backup["warn_after_seconds"]:
        out.append(("WARN", "%s: the last backup is %s old (more than %s); is redis-vps-backup@%s.timer running?"
                            % (name, _age(backup["age_seconds"]), _age(backup["warn_after_seconds"]), name)))
    if h.get("binary_replaced"):
        out.append(("WARN", "%s runs a server binary that a package upgrade replaced: the old code (and its security holes) "
                            "runs until a restart; %s" % (name, "restart it now: systemctl restart %s-server@cache "
                                                          "(it keeps nothing; its keys are lost)" % h["engine"]
                                                          if name == "cache" and not h["persistent"] else
                                                          "restart it at a quiet time (rerun site.yml, or systemctl restart "
                                                          "%s-server@%s): a few seconds without it" % (h["engine"], name))))
    if h["metrics"] and "NOT RUNNING" in h["metrics"]:
        out.append(("WARN", "%s's exporter is not running: %s; rerun site.yml" % (name, h["metrics"])))
    if h["rejected_connections"]:
        out.append(("WARN", "%s rejected %d connections (maxclients reached)" % (name, h["rejected_connections"])))
    if not out:
        out.append(("OK", "%s is healthy" % name))
    return out


def _age(seconds):
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def redis_health_lines(health):
    """The report of one instance as short lines, to read in a terminal."""
    h = health
    if not h["up"]:
        return ["%s: DOWN (%s)" % (h["name"], h["error"])]
    memory = "%s of %s" % (human(h["used_memory"]), human(h["maxmemory"]) if h["maxmemory"] else "no limit")
    if h["memory_ratio"] is not None:
        memory += " (%.1f%%)" % (100 * h["memory_ratio"])
    keys = " ".join("%s=%d" % item for item in sorted(h["keys"].items())) or "none"
    rate = "%.1f%%" % (100 * h["hit_rate"]) if h["hit_rate"] is not None else "-"
    if h["aof_enabled"] or h["rdb_last_save_age_seconds"] is not None and h["persistent"]:
        persistence = "RDB last save %s, %s ago; AOF %s, last write %s%s" % (
            h["rdb_last_bgsave_status"], _age(h["rdb_last_save_age_seconds"]),
            "on" if h["aof_enabled"] else "off", h["aof_last_write_status"] or "-",
            ", rewrite in progress" if h["aof_rewrite_in_progress"] else "")
    else:
        persistence = "none (nothing on disk)"
    return [
        "%s: up, %s %s, %s, up %s" % (h["name"], h["engine"], h["version"], h["role"], _age(h["uptime_seconds"])),
        "  memory       %s, peak %s, fragmentation %.2f, policy %s" % (
            memory, human(h["peak_memory"]), h["fragmentation_ratio"], h["maxmemory_policy"]),
        "  keys         %s; evicted %d, expired %d" % (keys, h["evicted_keys"], h["expired_keys"]),
        "  lookups      %d hits, %d misses, hit rate %s" % (h["keyspace_hits"], h["keyspace_misses"], rate),
        "  clients      %d connected, %d blocked, %d rejected; %d ops/s" % (
            h["connected_clients"], h["blocked_clients"], h["rejected_connections"], h["ops_per_sec"]),
        "  persistence  %s" % persistence,
        "  slowlog      %s entries; OOM rejections %d" % (h["slowlog_len"], h["oom_rejections"]),
        "  doctor       %s" % (h["memory_doctor"] or "-"),
    ] + (["  metrics      %s" % h["metrics"]] if h["metrics"] else []) + replication_lines(h.get("replication")) \
      + backup_lines(h.get("backup"))


def replication_lines(rep):
    if not rep:
        return []
    if rep["role"] == "primary":
        return ["  replication  primary of %s" % ", ".join(
            "%s (%s, %d s behind)" % (r["address"], r["state"], r["lag"]) for r in rep["replicas"])]
    return ["  replication  replica of %s, link %s, last heard %d s ago" % (rep["primary"], rep["link"], rep["last_io_seconds"])]


def backup_lines(backup):
    if not backup:
        return []
    if backup["age_seconds"] is None:
        line = "none yet (the timer takes the first; playbooks/backup.yml takes one now)"
    else:
        line = "%s, %s ago, %s kept in %s" % (backup["last_snapshot"], _age(backup["age_seconds"]),
                                              backup["local_snapshots"], backup["dir"])
    if backup["failed"]:
        line = "LAST RUN FAILED (%s); last good: %s" % (backup["last_error"], line)
    lines = ["  backup       " + line]
    if backup["offsite_repository"]:
        lines.append("  off-site     %s: %s" % (backup["offsite_repository"], "%s, %s ago" % (
            backup["offsite_snapshot"], _age(backup["offsite_age_seconds"])) if backup["offsite_snapshot"] else "none yet"))
    return lines


class FilterModule:
    def filters(self):
        return {
            "redis_health": redis_health,
            "redis_health_lines": redis_health_lines,
        }
