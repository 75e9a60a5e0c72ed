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
options:
  instances: {description: Instance names., type: list, elements: str, required: true}
  engines: {description: Engine names; each one's files are looked for under its own name., type: list, elements: str, required: true}
  packages: {description: Packages to tell whether dpkg has them installed., type: list, elements: str, default: []}
  adopt_engine:
    description:
      - Engine whose package instance (C(ENGINE-server.service), C(/etc/ENGINE/ENGINE.conf)) to inspect, with the
        PHP-FPM pools (C(/etc/php/*/fpm/pool.d/*.conf)) that set C(session.*); RV(adopt). Empty, not looked at.
    type: str
    default: ""
  queue:
    description: The queue instance's config file and data folder (C(conf), C(dir)); RV(queue_data).
    type: dict
author: redis-vps developers
"""

RETURN = r"""
memtotal_mb: {description: RAM in MB (MemTotal), the figure Ansible's memtotal_mb fact gives., type: int, returned: always}
os_id: {description: ID from /etc/os-release (debian)., type: str, returned: always}
os_version: {description: "VERSION_ID from /etc/os-release (12, 13), empty on testing or unstable.", type: str, returned: always}
os_codename: {description: VERSION_CODENAME from /etc/os-release (bookworm, trixie)., type: str, returned: always}
present: {description: "Engine -> the config files and data folders of its instances found on the host.", type: dict, returned: always}
installed: {description: Those of O(packages) that dpkg has installed., type: list, returned: always}
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
queue_data:
  description: "The queue instance: holds_data (its RDB or AOF files hold data), replicated (its config names a
    masteruser: it is a member of redis_ha already)."
  type: dict
  returned: when O(queue) is set
  sample: {holds_data: true, replicated: false}
  sample: {engine: redis, installed: true, active: true, enabled: true, masked: false, databases: {"0": 40, "1": 100},
           data_files: [], error: "", pools: [{path: /etc/php/8.4/fpm/pool.d/www.conf, line: 440,
           directive: php_value, setting: session.save_path}], requirepass_set: true, requirepass_ok: true, pending: true}
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
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


def installed(packages, exists=os.path.exists):
    """Those of `packages` dpkg has a file list of (installed, any architecture)."""
    arch = os.uname().machine.replace("x86_64", "amd64").replace("aarch64", "arm64")
    return [name for name in packages
            if exists("/var/lib/dpkg/info/%s.list" % name) or exists("/var/lib/dpkg/info/%s:%s.list" % (name, arch))]


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def main():
    module = AnsibleModule(
        argument_spec=dict(instances=dict(type="list", elements="str", required=True),
                           engines=dict(type="list", elements="str", required=True),
                           packages=dict(type="list", elements="str", default=[]),
                           adopt_engine=dict(type="str", default=""),
                           queue=dict(type="dict")),
        supports_check_mode=True,
    )
    release = os_release(read("/etc/os-release"))
    extra = {}
    if module.params["adopt_engine"]:
        extra["adopt"] = inspect_package_instance(module.params["adopt_engine"], module.run_command)
    if module.params["queue"]:
        extra["queue_data"] = queue_data(module.params["queue"]["conf"], module.params["queue"]["dir"])
    module.exit_json(
        changed=False,
        memtotal_mb=memtotal_mb(read("/proc/meminfo")),
        os_id=release.get("ID", ""),
        os_version=release.get("VERSION_ID", ""),
        os_codename=release.get("VERSION_CODENAME", ""),
        present=present(module.params["engines"], module.params["instances"]),
        installed=installed(module.params["packages"]),
        **extra
    )


if __name__ == "__main__":
    main()
