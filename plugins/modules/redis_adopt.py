#!/usr/bin/python
"""Move a hand-made setup (the package's own redis-server.service or valkey-server.service,
PHP-FPM pools that set sessions) into the role's instances. Runs only on an adoption:
never on a rerun (the validation play finds nothing to adopt then).

Three steps, one module run each, so that the role's own tasks start the new
instances between them (the old instance holds port 6379, which the cache needs):
export (writes paused, every key dumped aside, the old instance stopped), import
(every key restored into its new instance and counted; only then the pools'
session lines neutralised, the old unit disabled and masked, its data files put
aside), rollback (after any failure: the new instances stopped, the old one
running again with every key)."""

DOCUMENTATION = r"""
module: redis_adopt
short_description: Move the package's own Redis or Valkey instance and the PHP pools' session lines into the role's instances
description:
  - "O(state=export) pauses writes on the package's instance (C(CLIENT PAUSE WRITE)), dumps every key of every database
    (C(DUMP), with its expiry) to C(keys.jsonl) in a new root-only folder under O(aside_root), copies its config there,
    and stops its unit. A stopped (not masked) unit is started first, so that its files are read."
  - "O(state=import) restores every key (C(RESTORE ... REPLACE ABSTTL)) into the instance O(databases) maps its
    database to, in the same database number, and checks each key is there. Then it comments out the C(session.*)
    lines of the PHP-FPM pools (a copy of each file in the folder), disables and masks the old unit and moves its
    data files (C(dump.rdb), C(appendonlydir)) into the folder."
  - "O(state=rollback) undoes what an export and an import did: the new instances (O(new_units)) stopped and
    disabled, the pools' files, the mask and the data files put back, the old unit started, every key restored in it."
  - Every step reports a change; the role runs this module only on an adoption, never on a rerun.
options:
  state:
    description: Which step.
    type: str
    choices: [export, import, rollback]
    required: true
  engine:
    description: The engine whose package's instance is adopted (C(redis) or C(valkey)); it names its files and unit.
    type: str
    required: true
  aside_root:
    description: Where O(state=export) makes the folder.
    type: path
    default: /var/backups/redis-vps-adopt
  folder:
    description: The folder O(state=export) returned (RV(folder)); required for O(state=import) and O(state=rollback).
    type: path
  databases:
    description: "Old database number -> name of the instance it moves to (O(state=import))."
    type: dict
    default: {}
  targets:
    description: "Instance name -> its unix socket (O(state=import))."
    type: dict
    default: {}
  user:
    description: ACL user of the new instances.
    type: str
    default: admin
  password:
    description: Password of O(user); required for O(state=import).
    type: str
  new_units:
    description: The new instances' units (O(state=rollback) stops and disables them).
    type: list
    elements: str
    default: []
  pause_ms:
    description: How long writes stay paused at most while the keys are dumped, in milliseconds.
    type: int
    default: 120000
attributes:
  check_mode:
    description: Not supported; every step changes the host.
    support: none
  diff_mode:
    description: No diff is returned.
    support: none
author: redis-vps developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Pause writes on the package's instance, dump every key aside, stop it
  redis_vps.server.redis_adopt:
    state: export
    engine: redis
    databases: {"0": cache, "3": cache, "1": queue, "2": queue}
  register: export

- name: Restore every key into its instance and count; then the pools, the old unit, its files
  redis_vps.server.redis_adopt:
    state: import
    engine: redis
    folder: "{{ export.folder }}"
    databases: {"0": cache, "3": cache, "1": queue, "2": queue}
    targets:
      cache: /run/redis-cache/redis-server.sock
      queue: /run/redis-queue/redis-server.sock
    user: admin
    password: "{{ redis_credentials.admin }}"

- name: Give the old instance back, with every key (in a rescue)
  redis_vps.server.redis_adopt:
    state: rollback
    engine: redis
    folder: "{{ export.folder }}"
    new_units: [redis-server@cache.service, redis-server@queue.service]
"""

RETURN = r"""
folder:
  description: The root-only folder holding the dump, the old config, the pools' copies and the old data files.
  type: str
  returned: always
  sample: /var/backups/redis-vps-adopt/redis-20261201T101500Z
databases:
  description: "Old database number -> what became of its keys: C(found), C(moved), C(expired) (on their own
    meanwhile) and the C(instance) they went to."
  type: dict
  returned: always
  sample: {"0": {"found": 120, "moved": 120, "expired": 0, "instance": cache}}
pools:
  description: The pool files whose session lines were commented out.
  type: list
  elements: str
  returned: when O(state=import)
  sample: [/etc/php/8.4/fpm/pool.d/www.conf]
moved_files:
  description: "The old data files, now in the folder: original path -> new path."
  type: dict
  returned: when O(state=import)
  sample: {"/var/lib/redis/dump.rdb": "/var/backups/redis-vps-adopt/redis-20261201T101500Z/dump.rdb"}
"""

import base64
import glob
import json
import os
import shutil
import time

from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule
from ansible_collections.redis_vps.server.plugins.module_utils.redis_handmade import (
    POOL_GLOB, connect_old, keyspace, layout, neutralise_pool, parse_conf, pool_session_lines, read_text)
from ansible_collections.redis_vps.server.plugins.module_utils.redis_resp import RedisError, RespConnection

BATCH = 500


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def write_private(path, data):
    """A root-only file (0600), written whole then renamed."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data if isinstance(data, bytes) else data.encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, path)


def record(db, key, pttl, payload, now_ms):
    """One key of the dump: its database, name, absolute expiry (ms, 0 = none) and DUMP payload."""
    return {"db": db, "key": base64.b64encode(key).decode(), "expire_at": now_ms + pttl if pttl > 0 else 0,
            "dump": base64.b64encode(payload).decode()}


def restore_command(item):
    args = [b"RESTORE", base64.b64decode(item["key"]), str(item["expire_at"]).encode(), base64.b64decode(item["dump"]), b"REPLACE"]
    return args + [b"ABSTTL"] if item["expire_at"] else args


def tally(items, exists, now_ms):
    """Per database: found, moved (there now), expired (not there, but its expiry has passed), missing."""
    out = {}
    for item, there in zip(items, exists):
        row = out.setdefault(str(item["db"]), {"found": 0, "moved": 0, "expired": 0, "missing": 0})
        row["found"] += 1
        if there:
            row["moved"] += 1
        elif item["expire_at"] and item["expire_at"] <= now_ms:
            row["expired"] += 1
        else:
            row["missing"] += 1
    return out


def wait_connect(conf, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = connect_old(conf, raw=True)
            conn.call("PING")
            return conn
        except (OSError, RedisError) as error:
            if "LOADING" not in str(error) and not isinstance(error, OSError):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def systemctl(module, *args):
    rc, _out, err = module.run_command(["systemctl"] + list(args))
    if rc != 0:
        module.fail_json(msg="systemctl %s: %s" % (" ".join(args), err.strip()))


def load_items(folder):
    with open(os.path.join(folder, "keys.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def restore(conn, items):
    """RESTORE every item in its database on `conn`; EXISTS for each afterwards."""
    exists = []
    for db in sorted({item["db"] for item in items}):
        mine = [item for item in items if item["db"] == db]
        conn.call("SELECT", db)
        for start in range(0, len(mine), BATCH):
            batch = mine[start:start + BATCH]
            for reply in conn.pipeline([restore_command(item) for item in batch]):
                if isinstance(reply, RedisError):
                    raise reply
        for start in range(0, len(mine), BATCH):
            exists += [reply == 1 for reply in conn.pipeline([(b"EXISTS", base64.b64decode(i["key"])) for i in mine[start:start + BATCH]])]
    ordered = sorted(items, key=lambda item: item["db"])
    return ordered, exists


def state_file(folder):
    return os.path.join(folder, "state.json")


def save_state(folder, state):
    write_private(state_file(folder), json.dumps(state, indent=1))


def export(module, engine, conf, paths):
    state = module.run_command(["systemctl", "show", "--property=ActiveState,UnitFileState", paths["unit"]])[1]
    if "UnitFileState=masked" in state:
        module.fail_json(msg="%s is masked: there is no instance to adopt" % paths["unit"])
    if "ActiveState=active" not in state:
        systemctl(module, "start", paths["unit"])
    conn = wait_connect(conf, 60)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = os.path.join(module.params["aside_root"], "%s-%s" % (engine, stamp))
    stopped = False
    try:
        conn.call("CLIENT", "PAUSE", module.params["pause_ms"], "WRITE")
        counts = keyspace(text(conn.call("INFO", "keyspace")))
        unmapped = sorted(set(counts) - {int(db) for db in module.params["databases"]})
        if unmapped:
            module.fail_json(msg="redis_adopt_databases maps no instance for database(s) %s, which hold keys" % unmapped)
        os.makedirs(module.params["aside_root"], mode=0o700, exist_ok=True)
        os.mkdir(folder, 0o700)
        lines, found = [], {}
        for db in sorted(counts):
            conn.call("SELECT", db)
            keys, cursor = [], b"0"
            while True:
                cursor, batch = conn.call("SCAN", cursor, "COUNT", 1000)
                keys += batch
                if cursor in (b"0", "0"):
                    break
            keys = list(dict.fromkeys(keys))      # SCAN may return a key twice
            for start in range(0, len(keys), BATCH):
                batch = keys[start:start + BATCH]
                now_ms = int(time.time() * 1000)
                # The pause runs from now again: a large dataset never outlasts it.
                replies = conn.pipeline([(b"CLIENT", b"PAUSE", str(module.params["pause_ms"]).encode(), b"WRITE")]
                                        + [c for key in batch for c in ((b"PTTL", key), (b"DUMP", key))])[1:]
                for key, pttl, payload in zip(batch, replies[0::2], replies[1::2]):
                    if isinstance(pttl, RedisError) or isinstance(payload, RedisError):
                        module.fail_json(msg="database %d: a key could not be dumped: %s" % (db, pttl if isinstance(pttl, RedisError) else payload))
                    if payload is None:
                        continue                      # gone (expired) since SCAN
                    lines.append(json.dumps(record(db, key, pttl, payload, now_ms)))
            found[str(db)] = len(keys)
            size = conn.call("DBSIZE")
            if size != len(keys):
                module.fail_json(msg="database %d: %d keys dumped, DBSIZE says %d" % (db, len(keys), size))
        write_private(os.path.join(folder, "keys.jsonl"), "\n".join(lines) + "\n")
        shutil.copy2(paths["conf"], os.path.join(folder, os.path.basename(paths["conf"])))
        os.chmod(os.path.join(folder, os.path.basename(paths["conf"])), 0o600)
        save_state(folder, {"pools": [], "masked": False, "moved": []})
        # Writes stay paused until the server stops: none can land after the dump.
        systemctl(module, "stop", paths["unit"])
        stopped = True
    finally:
        if not stopped:
            try:
                conn.call("CLIENT", "UNPAUSE")
            except (OSError, RedisError):
                pass
        conn.close()
    return {"folder": folder, "databases": {db: {"found": n} for db, n in found.items()}}


def import_(module, engine, conf, paths):
    folder = module.params["folder"]
    items = load_items(folder)
    mapping = {str(k): v for k, v in module.params["databases"].items()}
    results, ordered_all, exists_all = {}, [], []
    for name, socket_path in module.params["targets"].items():
        mine = [item for item in items if mapping.get(str(item["db"])) == name]
        if not mine:
            continue
        conn = RespConnection(socket_path, 30, raw=True)
        try:
            conn.call("AUTH", module.params["user"], module.params["password"])
            ordered, exists = restore(conn, mine)
        finally:
            conn.close()
        ordered_all += ordered
        exists_all += exists
    lost = [item for item in items if str(item["db"]) not in mapping or mapping[str(item["db"])] not in module.params["targets"]]
    counted = tally(ordered_all + lost, exists_all + [False] * len(lost), int(time.time() * 1000))
    for db, row in counted.items():
        row["instance"] = mapping.get(db, "")
        results[db] = row
    missing = {db: row["missing"] for db, row in results.items() if row["missing"]}
    if missing:
        module.fail_json(msg="keys missing after the restore (database -> keys): %s" % missing, databases=results, folder=folder)
    # The data are in and counted: the pools, the old unit, its files.
    state = json.load(open(state_file(folder), encoding="utf-8"))
    for path in sorted(glob.glob(POOL_GLOB)):
        content = read_text(path)
        if not pool_session_lines(path, content):
            continue
        copy = os.path.join(folder, "pool-" + path.strip("/").replace("/", "_"))
        shutil.copy2(path, copy)
        os.chmod(copy, 0o600)
        state["pools"].append([path, copy])
        save_state(folder, state)
        stat = os.stat(path)
        with open(path + ".redis-vps-tmp", "w", encoding="utf-8") as handle:
            handle.write(neutralise_pool(content))
        os.chown(path + ".redis-vps-tmp", stat.st_uid, stat.st_gid)
        os.chmod(path + ".redis-vps-tmp", stat.st_mode & 0o7777)
        os.rename(path + ".redis-vps-tmp", path)
    systemctl(module, "disable", "--quiet", paths["unit"])
    state["masked"] = True
    save_state(folder, state)
    systemctl(module, "mask", "--quiet", paths["unit"])
    moved = {}
    for source in (paths["rdb"], paths["aof_dir"]):
        if os.path.exists(source):
            target = os.path.join(folder, "data-" + os.path.basename(source))
            state["moved"].append([source, target])
            save_state(folder, state)
            shutil.move(source, target)
            moved[source] = target
    report = {"folder": folder, "databases": results, "pools": [p for p, _lines in state["pools"]], "moved_files": moved}
    write_private(os.path.join(folder, "report.json"), json.dumps(report, indent=1, sort_keys=True))
    return report


def rollback(module, engine, conf, paths):
    folder = module.params["folder"]
    for unit in module.params["new_units"]:
        module.run_command(["systemctl", "stop", unit])
        module.run_command(["systemctl", "disable", "--quiet", unit])
    state = json.load(open(state_file(folder), encoding="utf-8"))
    for source, target in reversed(state["moved"]):
        if os.path.exists(target) and not os.path.exists(source):
            shutil.move(target, source)
    if state["masked"]:
        systemctl(module, "unmask", "--quiet", paths["unit"])
    for path, copy in state["pools"]:
        shutil.copy2(copy, path + ".redis-vps-tmp")
        os.rename(path + ".redis-vps-tmp", path)
    systemctl(module, "enable", "--quiet", paths["unit"])
    systemctl(module, "start", paths["unit"])
    items = load_items(folder)
    conn = wait_connect(conf, 60)
    try:
        ordered, exists = restore(conn, items)
    finally:
        conn.close()
    counted = tally(ordered, exists, int(time.time() * 1000))
    missing = {db: row["missing"] for db, row in counted.items() if row["missing"]}
    if missing:
        module.fail_json(msg="the old instance runs again but lacks keys (database -> keys): %s; all of them are in %s"
                         % (missing, os.path.join(folder, "keys.jsonl")), folder=folder, databases=counted)
    return {"folder": folder, "databases": counted}


def main():
    module = QuietModule(
        argument_spec=dict(
            state=dict(type="str", choices=["export", "import", "rollback"], required=True),
            engine=dict(type="str", required=True),
            aside_root=dict(type="path", default="/var/backups/redis-vps-adopt"),
            folder=dict(type="path"),
            databases=dict(type="dict", default={}),
            targets=dict(type="dict", default={}),
            user=dict(type="str", default="admin"),
            password=dict(type="str", no_log=True),
            new_units=dict(type="list", elements="str", default=[]),
            pause_ms=dict(type="int", default=120000),
        ),
        required_if=[("state", "import", ["folder", "password"]), ("state", "rollback", ["folder"])],
    )
    engine = module.params["engine"]
    conf = parse_conf(read_text("/etc/%s/%s.conf" % (engine, engine)))
    paths = layout(engine, conf)
    step = {"export": export, "import": import_, "rollback": rollback}[module.params["state"]]
    try:
        result = step(module, engine, conf, paths)
    except (OSError, RedisError, ValueError) as error:
        module.fail_json(msg="%s of the package's %s instance failed: %s" % (module.params["state"], engine, error),
                         folder=module.params["folder"] or "")
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
