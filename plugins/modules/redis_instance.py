#!/usr/bin/python
"""Bring Redis instances' files and running servers to their intended state.

One module run for the host's instances (O(instances)), or for one, on every run of the role: it writes the config and
users files when their content (rendered by the role's templates) differs, then
reads CONFIG GET * once over the unix socket, changes live only what differs,
reloads the users with ACL LOAD when they changed, and says which differences
need a restart instead. A template task per file, a module run for the live
part, costs five module runs per instance where this costs one (each is about
0.2 s of Python on the host, most of an idempotent rerun).

Why not community.general.redis: it sets one parameter per call over TCP only,
and converts sizes such as 256m with binary units while Redis reads 256m as
256,000,000 bytes.
"""

DOCUMENTATION = r"""
module: redis_instance
short_description: Write a Redis instance's files, apply what can change live, report what needs a restart
description:
  - Each of O(files) whose content differs is written (temporary file with its final owner and mode, then renamed),
    the previous one kept as a backup (RV(backups)). Owner and mode are corrected when only they differ.
  - Backup copies of the config and users files that an interrupted earlier run left are removed (RV(removed)).
  - When the instance is not running (RV(running) false) nothing else is done; starting it applies the files.
  - Otherwise connects over the unix socket, authenticates as O(user) (with O(previous_password_file)'s password if
    O(password) is refused), reads C(CONFIG GET *).
  - "A users file that differs from the running users in passwords only, or in users it adds, is applied with
    C(ACL SETUSER ... resetpass #HASH...) (a new user: C(ACL SETUSER NAME reset RULES...)), which drops no
    connection; any other difference with C(ACL LOAD)."
  - Settings listed in O(live) that differ are applied with C(CONFIG SET), C(maxmemory-policy) first.
  - Other differing settings are returned in RV(restart_required); this module never restarts anything.
  - If O(user) cannot authenticate (the users file changed and is not loaded yet), RV(restart_required) is C([auth]).
  - If the running server's executable was replaced on disk (a package upgrade that did not restart it),
    RV(restart_required) includes C(upgraded).
  - "With O(instances), all of this for each instance of the list in one module run (a module run costs about
    0.2 s of Python on the host on every rerun): each instance's result in RV(results); one that fails does not stop
    the others, and the module then fails naming them."
options:
  instances:
    description:
      - "Instances to bring to their intended state in this one run: each element takes the options below (from
        O(socket) to O(backup_status), with their defaults; O(socket), O(password) and O(config) required), and
        C(instance), any value, returned as it is in its result (the role's record of the instance)."
      - Not with O(socket) (the options below then describe the one instance of the run).
    type: list
    elements: dict
  socket:
    description: Path of the instance's unix socket. Required without O(instances).
    type: path
  service:
    description: The instance's systemd unit; its state (C(systemctl show)) tells RV(running) and RV(enabled).
    type: str
  user:
    description: ACL user to authenticate as.
    type: str
    default: admin
  password:
    description: Password of O(user). Required with O(socket).
    type: str
  config:
    description: "Intended settings, Redis names to values in C(CONFIG GET) form (sizes in bytes). Required with O(socket)."
    type: dict
  live:
    description: Names of the settings that may be changed at runtime.
    type: list
    elements: str
    default: []
  data_dir:
    description: "The instance's data folder: created, and its owner and mode corrected, before the files are written."
    type: dict
    suboptions:
      path:
        description: Folder.
        type: path
        required: true
      owner:
        description: Owner.
        type: str
        default: redis
      group:
        description: Group.
        type: str
        default: redis
      mode:
        description: Mode, octal.
        type: str
        default: "0700"
  conf:
    description: The config file (shown in diffs).
    type: dict
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      content:
        description: Its intended content.
        type: str
        required: true
      server_owned:
        description:
          - Directives whose lines in the file are the server's (C(CONFIG REWRITE) by Sentinel, C(replicaof)) and are
            kept; the file is then compared by directive, not byte.
        type: list
        elements: str
        default: []
      server_added:
        description: Directives C(CONFIG REWRITE) may add, ignored in the comparison.
        type: list
        elements: str
        default: []
      initial:
        description: "Directive -> value for a new file, in place of the O(conf.server_owned) lines it cannot keep yet."
        type: dict
        default: {}
  users:
    description: The users file (the instance's aclfile). A change is loaded with C(ACL LOAD) or C(ACL SETUSER).
    type: dict
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      content:
        description: Its content (never shown).
        type: str
        required: true
  owner:
    description: Owner of the config and users files.
    type: str
    default: redis
  group:
    description: Group of the config and users files.
    type: str
    default: root
  mode:
    description: Mode of the config and users files.
    type: str
    default: "0640"
  app_password:
    description:
      - Not used any more (kept so that older playbooks still run); the running users' passwords are compared with
        the users file's by C(ACL GETUSER), and those that differ are set live with C(ACL SETUSER).
    type: str
  timeout:
    description: Seconds to wait for a socket that is there to accept connections.
    type: int
    default: 10
  files:
    description:
      - Other files of the instance, written when they differ; their contents are never shown.
    type: list
    elements: dict
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      content:
        description: Its content (never shown).
        type: str
        required: true
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Mode, octal.
        type: str
        default: "0644"
      validate:
        description:
          - "C(nft): an nftables fragment, included by /etc/nftables.conf's table inet filter. The new content is first
            checked with C(nft -c) after a stub of that table; when it fails, nothing at all is written and the module
            fails naming the file. Skipped where nft is not installed (no firewall loads the fragments)."
        type: str
        choices: [nft]
      dir_mode:
        description: The mode of the file's folder (the host's credential store, /etc/redis-vps/credentials, is 0700).
        type: str
  absent:
    description: Files to remove when they are there (a finished rotation's NAME.retiring), reported in RV(written).
    type: list
    elements: path
    default: []
  previous_password_file:
    description:
      - A root-only file with O(user)'s password as the host knew it before this run (the credential store's copy),
        read before O(files) are written. When O(password) is refused, this one is tried, so that a new password
        given in the inventory applies live (C(ACL SETUSER)) instead of needing a restart.
    type: path
  services:
    description: Other units of the instance whose state to report in RV(units) (with O(service)).
    type: list
    elements: str
    default: []
  secret_config:
    description: Settings whose values are secrets (masterauth), compared like O(config) but never returned nor shown in a diff.
    type: dict
    default: {}
  report:
    description: Also read the health report's figures (RV(info), RV(memory_doctor), RV(slowlog_len)).
    type: bool
    default: false
  backup_status:
    description: Path of the instance's backup status file (roles/redis_backup), returned as RV(backup) when it is there.
    type: path
attributes:
  check_mode:
    description: Writes nothing and changes nothing live; reports what it would do (the health report runs it so).
    support: full
  diff_mode:
    description: The config file's change is shown; the users file's and O(files)' never are.
    support: partial
author: redis-vps developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Write the data folder, config and users files, apply what can change live
  redis_vps.server.redis_instance:
    socket: /run/redis-cache/redis-server.sock
    service: redis-server@cache.service
    data_dir: {path: /var/lib/redis/cache, owner: redis, group: redis}
    owner: redis
    user: admin
    password: "{{ redis_credentials.admin }}"
    config: {maxmemory: "268435456", maxmemory-policy: allkeys-lru, save: ""}
    live: [maxmemory, maxmemory-policy, save]
    conf:
      path: /etc/redis/redis-cache.conf
      content: "{{ lookup('ansible.builtin.template', 'redis.conf.j2') }}"
    users:
      path: /etc/redis/redis-cache.acl
      content: "{{ lookup('ansible.builtin.template', 'redis-users.acl.j2') }}"
    previous_password_file: /etc/redis-vps/credentials/admin
  register: cache

- name: Both instances of the host in one module run (each result in results, with its instance)
  redis_vps.server.redis_instance:
    instances:
      - instance: {name: cache}
        socket: /run/redis-cache/redis-server.sock
        service: redis-server@cache.service
        password: "{{ redis_credentials.admin }}"
        config: {maxmemory: "268435456", maxmemory-policy: allkeys-lru}
        live: [maxmemory, maxmemory-policy]
        conf: {path: /etc/redis/redis-cache.conf, content: "{{ lookup('ansible.builtin.template', 'cache.conf.j2') }}"}
      - instance: {name: queue}
        socket: /run/redis-queue/redis-server.sock
        service: redis-server@queue.service
        password: "{{ redis_credentials.admin }}"
        config: {maxmemory-policy: noeviction}
        conf: {path: /etc/redis/redis-queue.conf, content: "{{ lookup('ansible.builtin.template', 'queue.conf.j2') }}"}
  register: applied
  failed_when: false   # each instance's failure is in applied.results

- name: Read an instance's figures for the health report, changing nothing
  redis_vps.server.redis_instance:
    socket: /run/redis-queue/redis-server.sock
    service: redis-server@queue.service
    password: "{{ redis_credentials.admin }}"
    config: {maxmemory-policy: noeviction}
    timeout: 2
    report: true
  check_mode: true
  changed_when: false
"""

RETURN = r"""
results:
  description:
    - "With O(instances): one result per instance, in their order, each with the keys below (those of a run for one
      instance), C(failed) and C(msg) (why it failed), and C(instance) as given. The others below are then not
      returned at the top."
  type: list
  elements: dict
  returned: with O(instances)
  sample: [{instance: {name: cache}, failed: false, changed: false, written: [], restart_required: [], running: true}]
written:
  description: Files whose content was written (or removed, O(absent)).
  type: list
  elements: str
  returned: always
  sample: [/etc/redis/redis-cache.conf]
acl:
  description: "How the users were applied: C(none), C(setuser) (passwords only, no connection dropped), C(load) (ACL LOAD)."
  type: str
  returned: always
  sample: none
backups:
  description: "Previous version of each written file: path -> backup path."
  type: dict
  returned: always
  sample: {}
removed:
  description: Backup copies an earlier, interrupted run had left beside the config and users files, removed.
  type: list
  elements: str
  returned: when there were any
applied:
  description: "Settings changed live: name -> C({before, after})."
  type: dict
  returned: always
  sample: {maxmemory-policy: {before: allkeys-lru, after: allkeys-lfu}}
restart_required:
  description: Differing settings that only a restart applies (C(auth), C(upgraded) as described above).
  type: list
  elements: str
  returned: always
  sample: []
running:
  description: "Whether the instance was running: O(service) active, or without it, its socket there."
  type: bool
  returned: always
enabled:
  description: Whether O(service) starts at boot (false without O(service)).
  type: bool
  returned: always
units:
  description: "O(service) and O(services): unit -> C({active, enabled})."
  type: dict
  returned: always
  sample: {"redis-server@cache.service": {active: true, enabled: true}}
run_id:
  description: The server's run_id (changes on every restart).
  type: str
  returned: when running
running_config:
  description: Running value of every intended setting.
  type: dict
  returned: when running
  sample: {maxmemory: "268435456", maxmemory-policy: allkeys-lru}
server:
  description: "The running server's engine (redis, valkey) and version."
  type: dict
  returned: when running
  sample: {engine: redis, version: 8.0.2}
info:
  description: INFO of the sections the health report reads, as a dict.
  type: dict
  returned: when running and O(report)
memory_doctor:
  description: MEMORY DOCTOR's answer.
  type: str
  returned: when running and O(report)
slowlog_len:
  description: SLOWLOG LEN.
  type: int
  returned: when running and O(report)
backup:
  description: The backup status file's content (null when there is none yet).
  type: dict
  returned: with O(backup_status)
"""

import grp
import hashlib
import json
import os
import pwd
import re
import shlex
import time
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule
from ansible_collections.redis_vps.server.plugins.module_utils import systemd
from ansible_collections.redis_vps.server.plugins.module_utils import files as host_file
from ansible_collections.redis_vps.server.plugins.module_utils.files import read, write_atomic
from ansible_collections.redis_vps.server.plugins.module_utils.redis_resp import RedisError, connect

# Applied before any other live change: shrinking maxmemory under noeviction
# would make writes fail at once, so the policy moves first.
FIRST = ("maxmemory-policy",)
# What the health report reads (INFO takes several sections since Redis 7.0).
REPORT_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication", "keyspace", "errorstats")


def plan_changes(running, intended, live):
    """Split the differences between running and intended settings.

    Returns (live_changes, restart_required): live_changes is an ordered list of
    (name, before, after); settings the server does not report are ignored.
    """
    changes, restart = [], []
    for name, value in intended.items():
        want = str(value)
        have = running.get(name)
        if have is None or have == want:
            continue
        if name in live:
            changes.append((name, have, want))
        else:
            restart.append(name)
    changes.sort(key=lambda change: (change[0] not in FIRST, change[0]))
    return changes, sorted(restart)


def authenticates(params, user, password):
    """Whether the running server accepts this user and password."""
    conn = connect(params["socket"], params["timeout"])
    try:
        conn.call("AUTH", user, password)
        return True
    except RedisError:
        return False
    finally:
        conn.close()


def acl_lines(text):
    """A users file as user -> (its passwords as SHA-256 hashes, its other rules), or None if a
    line is not `user NAME ...` (then only ACL LOAD applies it)."""
    users = {}
    for line in (text or "").splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] != "user" or len(words) < 2:
            return None
        hashes, rules = [], []
        for word in words[2:]:
            if word.startswith("#") and len(word) == 65:
                hashes.append(word[1:].lower())
            elif word.startswith(">"):
                hashes.append(hashlib.sha256(word[1:].encode()).hexdigest())
            else:
                rules.append(word)
        users[words[1]] = (sorted(set(hashes)), rules)
    return users


def password_changes(before, after):
    """user -> its new hashes, when `after` differs from `before` in passwords only;
    None when anything else differs (a rule, a user added or removed)."""
    old, new = acl_lines(before), acl_lines(after)
    if old is None or new is None or set(old) != set(new):
        return None
    if any(old[name][1] != new[name][1] for name in new):
        return None
    return {name: new[name][0] for name in new if old[name][0] != new[name][0]}


def added_users(before, after):
    """user -> (its hashes, its rules) for the users `after` adds to `before`, when that and passwords
    are the only differences (a new release's new user: added live, no connection dropped); None otherwise."""
    old, new = acl_lines(before), acl_lines(after)
    if not old or new is None or not set(old) < set(new):
        return None
    if any(old[name][1] != new[name][1] for name in old):
        return None
    return {name: new[name] for name in new if name not in old}


def add_users(conn, added):
    """Create each user as the users file has it, live."""
    for name, (hashes, rules) in sorted(added.items()):
        conn.call("ACL", "SETUSER", name, "reset", *(list(rules) + ["#" + h for h in hashes]))


def running_passwords(conn, users):
    """user -> the hashes the running server holds (None for a user it does not know)."""
    out = {}
    for name in users:
        reply = conn.call("ACL", "GETUSER", name)
        fields = dict(zip(reply[::2], reply[1::2])) if reply else {}
        out[name] = sorted(set(fields.get("passwords") or [])) if reply else None
    return out


def set_passwords(conn, changes):
    """Give each user exactly these passwords, live: its connections stay open."""
    for name, hashes in sorted(changes.items()):
        conn.call("ACL", "SETUSER", name, "resetpass", *["#" + h for h in hashes])


def server_of(info):
    """Engine and version from INFO server: Valkey reports redis_version 7.2.4 for
    clients' sake and its own version in valkey_version."""
    name = info.get("server_name", "redis")
    return {"engine": name, "version": info.get(name + "_version", info.get("redis_version"))}


def binary_replaced(pid):
    """Whether the running server's executable was replaced on disk (a package upgrade
    that did not restart it): the kernel then marks /proc/PID/exe as deleted."""
    if not pid:
        return False
    try:
        return os.readlink("/proc/%s/exe" % pid).endswith(" (deleted)")
    except OSError:
        return False


def sync_dir(module, result):
    """Create the data folder, or correct its owner and mode."""
    spec = module.params["data_dir"]
    if not spec:
        return
    path = spec["path"]
    want = (pwd.getpwnam(spec["owner"]).pw_uid, grp.getgrnam(spec["group"]).gr_gid, int(spec["mode"], 8))
    try:
        st = os.stat(path)
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777) == want:
            return
    except FileNotFoundError:
        if not module.check_mode:
            os.makedirs(path, mode=0o700)
    if not module.check_mode:
        os.chown(path, want[0], want[1])
        os.chmod(path, want[2])
    result["changed"] = True


def directives(text):
    """A config file's directives: name -> all its arguments (quotes undone), comments and
    blank lines skipped. The same settings written by us or by CONFIG REWRITE (which
    quotes paths) compare equal."""
    out = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        # One list of arguments per directive: CONFIG REWRITE writes `save 3600 1 300 100`
        # as one line per pair.
        out.setdefault(words[0].lower(), []).extend(normal_size(word) for word in words[1:])
    # CONFIG REWRITE writes client-output-buffer-limit as one line per class, `slave` as
    # `replica`, in its own order, and leaves out a class at Redis's default (tested on
    # Redis 8.0: pubsub 32mb 8mb 60 disappears): compare the other classes as a set.
    limits = out.get("client-output-buffer-limit")
    if limits:
        classes = [limits[i:i + 4] for i in range(0, len(limits), 4)]
        for limit in classes:
            limit[0] = {"slave": "replica"}.get(limit[0].lower(), limit[0].lower())
        out["client-output-buffer-limit"] = [word for limit in sorted(classes) if limit not in BUFFER_LIMIT_DEFAULTS
                                             for word in limit]
    return out


# Redis's default client-output-buffer-limit classes, in bytes.
BUFFER_LIMIT_DEFAULTS = (["normal", "0", "0", "0"], ["replica", "268435456", "67108864", "60"],
                         ["pubsub", "33554432", "8388608", "60"])


# Redis's own size units (memtoull): k and m are powers of ten, kb, mb and gb of two.
SIZE_UNITS = {"k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}
SIZE = re.compile(r"^([0-9]+)(k|kb|m|mb|g|gb)$", re.IGNORECASE)


def normal_size(word):
    """A size as bytes (CONFIG REWRITE writes 33554432 as 32mb), any other word as it is."""
    match = SIZE.match(word)
    return str(int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]) if match else word


def server_owned_lines(text, owned):
    """The lines of `text` that set a directive in `owned` (what the server, or Sentinel
    through CONFIG REWRITE, keeps in the file: replicaof after a failover)."""
    return [line for line in (text or "").splitlines()
            if line.strip() and not line.strip().startswith("#") and line.split()[0].lower() in owned]


def intended_conf(spec, before):
    """The config file to write and whether `before` already says the same.

    Without `server_owned`, the file is ours to the byte. With it (a replicated
    instance), the server's own lines for those directives are kept (or, in a new file,
    `initial` ones), directives the server adds that are not ours nor owned are allowed
    only if listed in `server_added`, and the comparison is by directive, so a CONFIG
    REWRITE that only quoted paths changes nothing."""
    owned = set(spec.get("server_owned") or [])
    if not owned:
        return spec["content"], before == spec["content"]
    kept = server_owned_lines(before, owned) if before is not None else \
        ["%s %s" % (name, value) for name, value in (spec.get("initial") or {}).items() if value]
    content = spec["content"].rstrip("\n") + "\n" + ("\n# Kept from the server (Sentinel's view)\n" + "\n".join(kept) + "\n"
                                                     if kept else "")
    if before is None:
        return content, False
    have, want = directives(before), directives(content)
    extra = set(have) - set(want) - set(spec.get("server_added") or [])
    same = not extra and all(have.get(name) == values for name, values in want.items())
    return content, same


def mask(result, diffs, secrets):
    """Hide the values of secret settings in what the module returns and shows."""
    for name in secrets:
        for key in ("running_config",):
            if name in result.get(key, {}):
                result[key][name] = "********"
        if name in result.get("applied", {}):
            result["applied"][name] = dict(before="********", after="********")
    pattern = re.compile(r"^(\s*(?:%s)\s).*$" % "|".join(map(re.escape, secrets)), re.MULTILINE | re.IGNORECASE) if secrets else None
    for diff in diffs or []:
        for side in ("before", "after"):
            if pattern and diff.get(side):
                diff[side] = pattern.sub(r"\1********", diff[side])


# A backup copy as AnsibleModule.backup_local names it: PATH.PID.YYYY-MM-DD@HH:MM:SS~
BACKUP_COPY = re.compile(r"\.[0-9]+\.[0-9]{4}-[0-9]{2}-[0-9]{2}@[0-9]{2}:[0-9]{2}:[0-9]{2}~")


def remove_stale_copies(module, result, path):
    """Backup copies of PATH that an earlier run left (it was stopped between writing the
    file and removing its copy): the file in place is the one the next step checks."""
    folder, name = os.path.split(path)
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in sorted(entries):
        if entry.startswith(name) and BACKUP_COPY.fullmatch(entry[len(name):]):
            if not module.check_mode:
                os.unlink(os.path.join(folder, entry))
            result.setdefault("removed", []).append(os.path.join(folder, entry))
            result["changed"] = True


def sync_files(module, result):
    """Write each file that differs (keeping a backup); fix owner and mode. Returns the changed paths."""
    params = module.params
    diffs = []
    if not (params["conf"] or params["users"]):
        return diffs
    for kind in ("conf", "users"):
        if params[kind]:
            remove_stale_copies(module, result, params[kind]["path"])
    uid = pwd.getpwnam(params["owner"]).pw_uid
    gid = grp.getgrnam(params["group"]).gr_gid
    mode = int(params["mode"], 8)
    for kind in ("conf", "users"):
        spec = params[kind]
        if not spec:
            continue
        path = spec["path"]
        before = read(path)
        content, same = intended_conf(spec, before) if kind == "conf" else (spec["content"], before == spec["content"])
        if same:
            st = os.stat(path)
            if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, gid, mode):
                if not module.check_mode:
                    os.chown(path, uid, gid)
                    os.chmod(path, mode)
                result["changed"] = True
            continue
        if not module.check_mode:
            if before is not None:
                result["backups"][path] = module.backup_local(path)
            try:
                write_atomic(path, content, uid, gid, mode)
            except OSError as exc:
                module.fail_json(msg="cannot write %s: %s" % (path, exc), **result)
        result["written"].append(path)
        result["changed"] = True
        if kind == "conf":
            diffs.append(dict(before_header=path, after_header=path, before=before or "", after=content))
    return diffs


def check_other_files(module, result):
    """`nft -c` on each new firewall fragment (C(validate: nft)) before anything is written."""
    for spec in module.params["files"] or []:
        if spec.get("validate") != "nft" or read(spec["path"]) == spec["content"]:
            continue
        try:
            host_file.check_nft_fragment(module.run_command, spec["content"])
        except host_file.CheckFailed as exc:
            module.fail_json(msg="the firewall fragment %s does not pass nft -c (nothing was written): %s"
                             % (spec["path"], exc), **result)


def sync_other_files(module, result):
    """Write each of O(files) whose content, owner or mode differs (no backup, no diff:
    they may hold secrets); their folder is made (root, 0755) when missing."""
    for spec in module.params["files"] or []:
        path, content = spec["path"], spec["content"]
        uid = pwd.getpwnam(spec["owner"]).pw_uid
        gid = grp.getgrnam(spec["group"]).gr_gid
        mode = int(spec["mode"], 8)
        if read(path) == content:
            st = os.stat(path)
            folder_ok = not spec.get("dir_mode") or os.stat(os.path.dirname(path)).st_mode & 0o7777 == int(spec["dir_mode"], 8)
            if (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, mode) and folder_ok:
                continue
        if not module.check_mode:
            try:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                if spec.get("dir_mode"):
                    os.chmod(os.path.dirname(path), int(spec["dir_mode"], 8))
                write_atomic(path, content, uid, gid, mode)
            except OSError as exc:
                module.fail_json(msg="cannot write %s: %s" % (path, exc), **result)
        result["written"].append(path)
        result["changed"] = True
    for path in module.params.get("absent") or []:
        if os.path.lexists(path):
            if not module.check_mode:
                os.unlink(path)
            result["written"].append(path)
            result["changed"] = True


def units_state(module, units):
    """unit -> its ActiveState and UnitFileState, with one systemctl call."""
    try:
        return systemd.show(module.run_command, units)
    except RuntimeError as exc:
        module.fail_json(msg=str(exc))


def instance_spec(required=True):
    """The options of one instance: the module's own, and each of O(instances)' (where the three
    required ones are required; at the top, only without O(instances))."""
    return dict(
        socket=dict(type="path", required=required),
        service=dict(type="str"),
        data_dir=dict(type="dict", options=dict(path=dict(type="path", required=True),
                                                owner=dict(type="str", default="redis"),
                                                group=dict(type="str", default="redis"),
                                                mode=dict(type="str", default="0700"))),
        user=dict(type="str", default="admin"),
        password=dict(type="str", required=required, no_log=True),
        config=dict(type="dict", required=required),
        live=dict(type="list", elements="str", default=[]),
        conf=dict(type="dict", options=dict(path=dict(type="path", required=True),
                                            content=dict(type="str", required=True),
                                            server_owned=dict(type="list", elements="str", default=[]),
                                            server_added=dict(type="list", elements="str", default=[]),
                                            initial=dict(type="dict", default={}))),
        users=dict(type="dict", options=dict(path=dict(type="path", required=True),
                                             content=dict(type="str", required=True, no_log=True))),
        owner=dict(type="str", default="redis"),
        group=dict(type="str", default="root"),
        mode=dict(type="str", default="0640"),
        app_password=dict(type="str", no_log=True),
        timeout=dict(type="int", default=10),
        report=dict(type="bool", default=False),
        # Only the contents are secret: the paths come back in `written`.
        files=dict(type="list", elements="dict", no_log=False,
                   options=dict(path=dict(type="path", required=True),
                                content=dict(type="str", required=True, no_log=True),
                                owner=dict(type="str", default="root"),
                                group=dict(type="str", default="root"),
                                mode=dict(type="str", default="0644"),
                                validate=dict(type="str", choices=["nft"]),
                                dir_mode=dict(type="str"))),
        absent=dict(type="list", elements="path", default=[]),
        previous_password_file=dict(type="path", no_log=False),
        services=dict(type="list", elements="str", default=[]),
        secret_config=dict(type="dict", default={}, no_log=True),
        backup_status=dict(type="path"),
    )


class _Ended(Exception):
    """One instance's part ended (exit_json or fail_json of InstanceRun): its result."""

    def __init__(self, result):
        super(_Ended, self).__init__("ended")
        self.result = result


class InstanceRun(object):
    """The module as one instance's part sees it: that instance's options as params; exit_json and
    fail_json end this part only (its result, failed or not), so that the others still run."""

    def __init__(self, module, params):
        self._module = module
        self.params = params

    def __getattr__(self, name):
        return getattr(self._module, name)

    def exit_json(self, **result):
        raise _Ended(dict(result, failed=False))

    def fail_json(self, msg, **result):
        raise _Ended(dict(result, failed=True, msg=msg))


def run_instance(module, params):
    """One instance's files and live changes; its result (failed true, with msg, when it failed)."""
    try:
        apply_instance(InstanceRun(module, params))
    except _Ended as ended:
        mask(ended.result, ended.result.get("diff"), list(params["secret_config"]))
        return ended.result
    raise AssertionError("apply_instance ended without exit_json or fail_json")


def apply_instance(module):
    """One instance, as main() did for the module's own options: ends with module.exit_json or fail_json."""
    params = module.params
    result = dict(changed=False, applied={}, restart_required=[], written=[], backups={}, running=False, enabled=False,
                  units={}, acl="none")
    # Read before the store's files are rewritten below: the password in force until now.
    previous = (read(params["previous_password_file"]) or "").rstrip("\n") if params["previous_password_file"] else ""
    users_before = read(params["users"]["path"]) if params["users"] else None
    if params["service"]:
        # So that the role asks systemd to enable or start only the units that need it.
        states = units_state(module, [params["service"]] + params["services"])
        result["units"] = {unit: systemd.summary(state) for unit, state in states.items()}
        result["enabled"] = result["units"][params["service"]]["enabled"]
        active = result["units"][params["service"]]["active"]
    else:
        active = os.path.exists(params["socket"])
    if params["backup_status"]:
        # Read here, so that the health report needs no module run of its own for it.
        try:
            result["backup"] = json.loads(read(params["backup_status"]) or "null")
        except ValueError:
            result["backup"] = {"last_error": "unreadable status file %s" % params["backup_status"],
                                "last_failure": int(time.time())}
    check_other_files(module, result)
    sync_dir(module, result)
    diffs = sync_files(module, result)
    sync_other_files(module, result)
    users_changed = bool(params["users"]) and params["users"]["path"] in result["written"]
    if not active:
        # Not running: starting it reads the files just written.
        if diffs:
            result["diff"] = diffs
        module.exit_json(**result)
    result["running"] = True
    try:
        conn = connect(params["socket"], params["timeout"])
    except OSError as exc:
        module.fail_json(msg="cannot connect to %s: %s" % (params["socket"], exc), **result)
    login = params["password"]
    try:
        try:
            conn.call("AUTH", params["user"], login)
        except RedisError as exc:
            if "WRONGPASS" not in str(exc):
                raise
            # A new password (given anew, or a rotation): the one the host's store held still works.
            try:
                if not previous or previous == login:
                    raise exc
                conn.call("AUTH", params["user"], previous)
                login = previous
            except RedisError:
                result["restart_required"] = ["auth"]
                if diffs:
                    result["diff"] = diffs
                module.exit_json(**result)
        wanted = acl_lines(params["users"]["content"]) if params["users"] else None
        added = {}
        if users_changed:
            # Passwords only (a rotation, a new password), or users added (a new release's):
            # ACL SETUSER, which drops no connection; anything else: ACL LOAD, which drops
            # the reloaded users' ones.
            changes = password_changes(users_before, params["users"]["content"]) if users_before is not None else None
            added = (added_users(users_before, params["users"]["content"]) if changes is None and users_before is not None
                     else None) or {}
            if added:
                old, new = acl_lines(users_before), acl_lines(params["users"]["content"])
                changes = {name: new[name][0] for name in old if old[name][0] != new[name][0]}
        elif wanted:
            # The file is as intended: do the running users hold its passwords?
            running_pw = running_passwords(conn, wanted)
            changes = None if None in running_pw.values() else \
                {name: wanted[name][0] for name in wanted if running_pw[name] != wanted[name][0]}
            users_changed = changes is None or bool(changes)
        else:
            changes = None
        if users_changed:
            if not module.check_mode:
                if changes is not None:
                    add_users(conn, added)
                    set_passwords(conn, changes)
                    result["acl"] = "setuser"
                else:
                    conn.call("ACL", "LOAD")
                    result["acl"] = "load"
                    # Redis drops the connections of reloaded users, ours included.
                    conn.close()
                    conn = connect(params["socket"], params["timeout"])
                    try:
                        conn.call("AUTH", params["user"], params["password"])
                    except RedisError:
                        conn.call("AUTH", params["user"], login)
            result["changed"] = True
        flat = conn.call("CONFIG", "GET", "*")
        running = dict(zip(flat[::2], flat[1::2]))
        intended = dict(params["config"], **params["secret_config"])
        changes, restart = plan_changes(running, intended, set(params["live"]))
        for name, before, after in changes:
            if not module.check_mode:
                conn.call("CONFIG", "SET", name, after)
            result["applied"][name] = dict(before=before, after=after)
        server = conn.info("server")
        if binary_replaced(server.get("process_id")):
            restart.append("upgraded")   # still the old binary: only a restart runs the new one
        result["restart_required"] = restart
        result["changed"] = result["changed"] or bool(changes)
        result["run_id"] = server.get("run_id")
        result["server"] = server_of(server)
        result["running_config"] = {name: running.get(name) for name in intended}
        if params["report"]:
            result["info"] = conn.info(*REPORT_SECTIONS)
            result["memory_doctor"] = conn.call("MEMORY", "DOCTOR")
            result["slowlog_len"] = conn.call("SLOWLOG", "LEN")
        if changes:
            diffs.append(dict(
                before_header="running server", after_header="running server",
                before="".join("%s %s\n" % (n, b) for n, b, _after in changes),
                after="".join("%s %s\n" % (n, a) for n, _before, a in changes),
            ))
        if diffs:
            result["diff"] = diffs
    except (RedisError, OSError) as exc:
        module.fail_json(msg="Redis at %s: %s" % (params["socket"], exc), **result)
    finally:
        conn.close()
    module.exit_json(**result)


def no_log_values(spec, params):
    """The values of the options marked no_log in `spec` (suboptions too), as AnsibleModule collects
    its own: whatever the module returns has them masked."""
    found = set()
    for name, option in spec.items():
        value = params.get(name)
        if value is None:
            continue
        if option.get("no_log"):
            found.update(str(item) for item in (value.values() if isinstance(value, dict) else [value]) if item)
        if option.get("options"):
            for element in value if isinstance(value, list) else [value]:
                found |= no_log_values(option["options"], element)
    return found


def instances_of(module):
    """O(instances), each checked against the options of one instance (the secrets among them
    masked in whatever the module returns, as its own no_log options are)."""
    spec = dict(instance_spec(), instance=dict(type="raw"))
    validator = ArgumentSpecValidator(spec)
    checked = []
    for number, element in enumerate(module.params["instances"], 1):
        result = validator.validate(element)
        if result.error_messages:
            module.fail_json(msg="instances[%d]: %s" % (number, "; ".join(result.error_messages)))
        module.no_log_values.update(no_log_values(spec, result.validated_parameters))
        checked.append(result.validated_parameters)
    return checked


def main():
    top = instance_spec(required=False)
    top["instances"] = dict(type="list", elements="dict")
    module = QuietModule(argument_spec=top, supports_check_mode=True, mutually_exclusive=[("socket", "instances")],
                         required_one_of=[("socket", "instances")], required_by={"socket": ("password", "config")})
    params = module.params
    if not params["instances"]:
        result = run_instance(module, params)
        if result.pop("failed"):
            module.fail_json(**result)
        module.exit_json(**result)
    results, diffs = [], []
    for spec in instances_of(module):
        result = run_instance(module, spec)
        diffs += result.pop("diff", [])
        result["instance"] = spec["instance"]
        results.append(result)
    failed = [result for result in results if result["failed"]]
    done = dict(changed=any(result["changed"] for result in results), results=results)
    if diffs:
        done["diff"] = diffs
    if failed:
        module.fail_json(msg="; ".join(result["msg"] for result in failed), **done)
    module.exit_json(**done)


if __name__ == "__main__":
    main()
