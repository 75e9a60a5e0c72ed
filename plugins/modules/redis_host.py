#!/usr/bin/python
"""Read, in one module run, what the Redis role must know about a host before it
changes anything: its RAM, its Debian release, and which engine's instances are
already there. Read-only.
"""

DOCUMENTATION = r"""
module: redis_host
short_description: Read a host's RAM, Debian release and the Redis or Valkey instances already on it
description:
  - Reads C(/proc/meminfo), C(/etc/os-release), and for every engine of O(engines) whether an instance of
    O(instances) already has a config file (C(/etc/ENGINE/ENGINE-NAME.conf)) or a data folder
    (C(/var/lib/ENGINE/NAME)) on the host. Changes nothing.
  - In the same run, as the options ask, the names in the host's credential store, the backup role's password files,
    the package's own instance and the PHP-FPM pools that set sessions, the queue's data, and, with O(recover), the
    passwords themselves. The validation play reads the host with this one module run.
options:
  instances:
    description: Instance names.
    type: list
    elements: str
    required: true
  engines:
    description: Engine names; each one's files are looked for under its own name.
    type: list
    elements: str
    required: true
  packages:
    description: Packages to tell whether dpkg has them installed (RV(installed), from C(/var/lib/dpkg/status)).
    type: list
    elements: str
    default: []
  inventory:
    description:
      - Also list every package dpkg has installed and every name under C(/etc/systemd/system) (RV(inventory)), for
        the vps_packages role's C(vps_packages_found) input, so that a rerun needs no look of its own.
    type: bool
    default: false
  records:
    description:
      - "Also check every record that M(redis_vps.server.host_files) runs left on the host (their
        O(redis_vps.server.host_files#module:record) option) against the host as it is now (RV(records),
        RV(records_moved)), for the host_files tasks later in the run (their
        O(redis_vps.server.host_files#module:recorded) option): a rerun then needs no module run for them."
    type: bool
    default: false
  credentials_dir:
    description: The host's credential store (one root-only file per password); only the names of its files are returned.
    type: path
    default: /etc/redis-vps/credentials
  backup_dir:
    description: The backup role's folder (its password files tell a backup repository is there).
    type: path
    default: /etc/redis-vps-backup
  compare:
    description: "Password name -> SHA-256 (hex) of the value the controller intends; RV(credentials_differ) names those the
      store holds otherwise."
    type: dict
    default: {}
  hash_names:
    description: Names whose stored password's SHA-256 to return in RV(current_hashes) (playbooks/rotate.yml keeps it as
      the old one).
    type: list
    elements: str
    default: []
  recover:
    description:
      - "Read the passwords back (playbooks/recover-credentials.yml): a list of C({name, sources, socket, user}). Each
        source is C({path, pattern, decode}): C(path) a glob, C(pattern) a regular expression whose first group is the
        password (without one, the whole file, its final newlines stripped), C(decode) one of C(none), C(url), C(env), C(shell). The store's
        file comes first. A value found is checked with C(AUTH) as C(user) on C(socket) when they are given."
      - The values come back in RV(recovered), so the task must be C(no_log).
    type: list
    elements: dict
    default: []
  adopt_engine:
    description:
      - Engine whose package instance (C(ENGINE-server.service), C(/etc/ENGINE/ENGINE.conf)) to inspect, with the
        PHP-FPM pools (C(/etc/php/*/fpm/pool.d/*.conf)) that set C(session.*); RV(adopt). Empty, not looked at.
    type: str
    default: ""
  queue:
    description: The queue instance's config file and data folder, as C({conf, dir}); RV(queue_data).
    type: dict
attributes:
  check_mode:
    description: Read-only; runs the same in check mode.
    support: full
  diff_mode:
    description: No diff is returned.
    support: none
author: redis-vps developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Read the host's RAM, release and Redis instances
  redis_vps.server.redis_host:
    instances: [cache, queue]
    engines: [redis, valkey]
    packages: [redis-sentinel]
    adopt_engine: redis
  register: host
  check_mode: false

- name: Read the passwords the host holds (the values come back, hence no_log)
  redis_vps.server.redis_host:
    instances: [cache, queue]
    engines: [redis]
    recover:
      - name: queue
        socket: /run/redis-queue/redis-server.sock
        sources:
          - {path: /etc/redis-vps/credentials/queue}
          - {path: /etc/php/*/fpm/conf.d/90-redis-sessions.ini, pattern: '[?&]auth=([^&"]+)', decode: url}
  register: found
  no_log: true
"""

RETURN = r"""
memtotal_mb:
  description: RAM in MB (MemTotal), the figure Ansible's memtotal_mb fact gives.
  type: int
  returned: always
  sample: 960
os_id:
  description: ID from /etc/os-release.
  type: str
  returned: always
  sample: debian
os_version:
  description: VERSION_ID from /etc/os-release (12, 13), empty on testing or unstable.
  type: str
  returned: always
  sample: "13"
os_codename:
  description: VERSION_CODENAME from /etc/os-release.
  type: str
  returned: always
  sample: trixie
present:
  description: "Engine -> the config files and data folders of its instances found on the host."
  type: dict
  returned: always
  sample: {redis: [/etc/redis/redis-cache.conf, /var/lib/redis/cache], valkey: []}
installed:
  description: Those of O(packages) that dpkg has installed.
  type: list
  elements: str
  returned: always
  sample: [redis-sentinel]
inventory:
  description:
    - "With O(inventory): C(packages), every package C(/var/lib/dpkg/status) records as installed (not one removed
      with its config files kept), C(units), the names under C(/etc/systemd/system) (a masked unit is a link there),
      and C(apt_lists), whether C(/var/lib/apt/lists) holds package lists."
  type: dict
  returned: when O(inventory) is true
  sample: {packages: [nftables, redis-server, redis-tools], units: [redis-server.service, multi-user.target.wants],
           apt_lists: true}
records:
  description:
    - With O(records), name -> digest of each record of C(/var/lib/redis-vps/host_files) that the host still holds
      (every file, folder, removed path, kernel value, group membership and unit as that run left it).
    - Digests of a run's options (the passwords among them), never the options.
  type: dict
  returned: when O(records) is true
  sample: {redis_kernel: 0c3f5e0d8a1b7f7d2c6e4a9b1f0e3d5c7a9b2e4f6d8c0a1b3e5f7d9c2b4a6e8f}
records_moved:
  description: With O(records), name -> what no longer holds, of each record the host no longer holds.
  type: dict
  returned: when O(records) is true
  sample: {redis_exporter: /etc/systemd/system/redis-exporter@.service is not as written}
php_fpm_versions:
  description: The PHP-FPM versions installed (C(/usr/sbin/php-fpmX.Y)), oldest first.
  type: list
  elements: str
  returned: always
  sample: ["8.4"]
credentials:
  description: Names of the passwords in the host's store (no value).
  type: list
  elements: str
  returned: always
  sample: [admin, backup, cache, monitor, queue]
retiring:
  description: "Name -> SHA-256 of the old password of a rotation in progress (the store's NAME.retiring; restic: the old key's ID)."
  type: dict
  returned: always
  sample: {}
credentials_differ:
  description: Names of O(compare) whose stored value is not the one intended.
  type: list
  elements: str
  returned: always
  sample: []
current_hashes:
  description: "O(hash_names) -> SHA-256 of the stored password, for those the store holds."
  type: dict
  returned: always
  sample: {}
backup_files:
  description: "Which of the backup role's password files are there: backup_password, restic_password."
  type: dict
  returned: always
  sample: {backup_password: true, restic_password: false}
recovered:
  description: "With O(recover): name -> C({value, source, verified}), verified true, false, or null (not checkable)."
  type: dict
  returned: when O(recover) is set
adopt:
  description:
    - "The package's own instance of O(adopt_engine) and the PHP pools: installed, active, enabled, masked (a masked
      unit is not looked at further: an earlier run replaced it), databases (db number -> keys, read from the running
      instance with its requirepass), data_files (its files that hold data, when it is not running), error (why its
      keys could not be read), pools (path, line, directive, setting of each pool line that sets session.*; never a
      value), requirepass_set, requirepass_ok (whether its password passes the role's rules; never the value),
      pending (whether any of it holds data: the run stops unless redis_adopt)."
  type: dict
  returned: when O(adopt_engine) is set
  sample: {engine: redis, installed: true, active: true, enabled: true, masked: false, databases: {"0": 40, "1": 100},
           data_files: [], error: "", pools: [{path: /etc/php/8.4/fpm/pool.d/www.conf, line: 440,
           directive: php_value, setting: session.save_path}], requirepass_set: true, requirepass_ok: true, pending: true}
queue_data:
  description: "The queue instance: holds_data (its RDB or AOF files hold data), replicated (its config names a
    masteruser: it is a member of redis_ha already)."
  type: dict
  returned: when O(queue) is set
  sample: {holds_data: true, replicated: false}
"""

import glob
import hashlib
import os
import re
import shlex
from urllib.parse import unquote

from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule
from ansible_collections.redis_vps.server.plugins.module_utils.redis_resp import RedisError, connect
from ansible_collections.redis_vps.server.plugins.module_utils import records as host_records
from ansible_collections.redis_vps.server.plugins.module_utils.redis_handmade import inspect as inspect_package_instance, queue_data


def memtotal_mb(meminfo):
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else 0


def os_release(text):
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def present(engines, instances, exists=os.path.exists):
    """engine -> the paths of its instances that exist."""
    found = {}
    for engine in engines:
        paths = []
        for name in instances:
            paths += ["/etc/%s/%s-%s.conf" % (engine, engine, name), "/var/lib/%s/%s" % (engine, name)]
        found[engine] = [path for path in paths if exists(path)]
    return found


def dpkg_installed(status):
    """The packages dpkg's status file (/var/lib/dpkg/status) records as installed. Its file lists
    (/var/lib/dpkg/info/NAME.list) are no proof: a package removed with its config files kept
    (apt remove) keeps its list."""
    found = set()
    for stanza in status.split("\n\n"):
        package = re.search(r"^Package: (\S+)$", stanza, re.MULTILINE)
        state = re.search(r"^Status: \S+ \S+ (\S+)$", stanza, re.MULTILINE)
        if package and state and state.group(1) == "installed":
            found.add(package.group(1))
    return found


def dpkg_status(path="/var/lib/dpkg/status"):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def installed(packages, there):
    """Those of `packages` that are in `there` (dpkg_installed's set), in their order."""
    return [name for name in packages if name in there]


def host_inventory(there, listdir=os.listdir):
    """Every installed package (`there`, dpkg_installed's set), every name under /etc/systemd/system,
    and whether apt has package lists at all (an image with emptied lists needs a refresh whatever
    their folder's age)."""
    def names(folder):
        try:
            return listdir(folder)
        except OSError:
            return []
    apt_lists = any(re.search(r"_Packages(\.[a-z0-9]+)?$", name) for name in names("/var/lib/apt/lists"))
    return dict(packages=sorted(there), units=sorted(names("/etc/systemd/system")), apt_lists=apt_lists)


def php_fpm_versions(listdir=os.listdir):
    """The PHP-FPM versions installed (/usr/sbin/php-fpmX.Y), oldest first: roles/php_session
    takes the newest without a look of its own on a rerun."""
    try:
        names = listdir("/usr/sbin")
    except OSError:
        return []
    found = [name[len("php-fpm"):] for name in names if re.fullmatch(r"php-fpm[0-9]+\.[0-9]+", name)]
    return sorted(found, key=lambda version: tuple(int(part) for part in version.split(".")))


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


# --- The credential store (/etc/redis-vps/credentials): names and hashes, never values ----

def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def credential_names(folder, listdir=os.listdir):
    """(names of the passwords in the store, name -> hash of a rotation's old password)."""
    try:
        entries = sorted(listdir(folder))
    except OSError:
        return [], {}
    names = [e for e in entries if re.match(r"^[a-z_]+$", e)]
    retiring = {}
    for entry in entries:
        if entry.endswith(".retiring"):
            value = read(os.path.join(folder, entry)).strip()
            if re.match(r"^[0-9a-f]{64}$", value):
                retiring[entry[:-len(".retiring")]] = value
    return names, retiring


def differing(folder, compare):
    """Names whose stored password is not the one the controller intends (by hash)."""
    out = []
    for name, wanted in sorted(compare.items()):
        path = os.path.join(folder, name)
        if os.path.exists(path) and sha256(read(path).rstrip("\n")) != wanted:
            out.append(name)
    return out


def hashes(folder, names):
    out = {}
    for name in names:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            out[name] = sha256(read(path).rstrip("\n"))
    return out


def decode(value, how):
    """A password as a config file writes it, back in clear."""
    if how == "url":
        return unquote(value)
    if how == "env":
        return re.sub(r'\\(["\\])', r"\1", value)
    if how == "shell":
        words = shlex.split(value)
        return words[0] if words else ""
    return value


def find_password(sources, reader=None):
    """The first password the sources hold: (value, path) or (None, None)."""
    reader = reader or read
    for source in sources:
        for path in sorted(glob.glob(source["path"])):
            text = reader(path)
            if not text:
                continue
            pattern = source.get("pattern")
            match = re.search(pattern, text, re.MULTILINE) if pattern else None
            value = decode(match.group(1), source.get("decode") or "none") if match else (None if pattern else text.strip("\n"))
            if value:
                return value, path
    return None, None


def verify(socket, user, password):
    """Whether the running server takes this password (None: no server to ask)."""
    if not socket or not os.path.exists(socket):
        return None
    try:
        conn = connect(socket, 5)
    except OSError:
        return None
    try:
        conn.call("AUTH", user, password)
        return True
    except RedisError:
        return False
    except OSError:
        return None
    finally:
        conn.close()


def recover(specs):
    out = {}
    for spec in specs:
        value, path = find_password(spec.get("sources") or [])
        if value is None:
            continue
        out[spec["name"]] = dict(value=value, source=path,
                                 verified=verify(spec.get("socket"), spec.get("user") or "default", value))
    return out


def main():
    module = QuietModule(
        argument_spec=dict(instances=dict(type="list", elements="str", required=True),
                           engines=dict(type="list", elements="str", required=True),
                           packages=dict(type="list", elements="str", default=[]),
                           inventory=dict(type="bool", default=False),
                           records=dict(type="bool", default=False),
                           credentials_dir=dict(type="path", default="/etc/redis-vps/credentials"),
                           backup_dir=dict(type="path", default="/etc/redis-vps-backup"),
                           compare=dict(type="dict", default={}, no_log=True),
                           hash_names=dict(type="list", elements="str", default=[]),
                           recover=dict(type="list", elements="dict", default=[]),
                           adopt_engine=dict(type="str", default=""),
                           queue=dict(type="dict")),
        supports_check_mode=True,
    )
    release = os_release(read("/etc/os-release"))
    params = module.params
    names, retiring = credential_names(params["credentials_dir"])
    extra = {}
    if params["recover"]:
        extra["recovered"] = recover(params["recover"])
    if params["adopt_engine"]:
        extra["adopt"] = inspect_package_instance(params["adopt_engine"], module.run_command)
    # dpkg's status read and parsed once, for both answers
    there = dpkg_installed(dpkg_status()) if params["inventory"] or params["packages"] else set()
    if params["inventory"]:
        extra["inventory"] = host_inventory(there)
    if params["records"]:
        try:
            extra["records"], extra["records_moved"] = host_records.holding(module.run_command)
        except RuntimeError as exc:
            extra["records"], extra["records_moved"] = {}, {"*": str(exc)}
    if params["queue"]:
        extra["queue_data"] = queue_data(params["queue"]["conf"], params["queue"]["dir"])
    module.exit_json(
        credentials=names,
        retiring=retiring,
        credentials_differ=differing(params["credentials_dir"], params["compare"]),
        current_hashes=hashes(params["credentials_dir"], params["hash_names"]),
        backup_files={"backup_password": os.path.exists(os.path.join(params["backup_dir"], "backup-password")),
                      "restic_password": os.path.exists(os.path.join(params["backup_dir"], "restic-password"))},
        **extra,
        changed=False,
        memtotal_mb=memtotal_mb(read("/proc/meminfo")),
        os_id=release.get("ID", ""),
        os_version=release.get("VERSION_ID", ""),
        os_codename=release.get("VERSION_CODENAME", ""),
        present=present(module.params["engines"], module.params["instances"]),
        installed=installed(module.params["packages"], there),
        php_fpm_versions=php_fpm_versions(),
    )


if __name__ == "__main__":
    main()
