#!/usr/bin/python
"""One host's Sentinel of the replicated queue: its config file written once, its
settings changed live, and what it knows about the current primary.

Sentinel rewrites its own config file (the primary it follows, the replicas and
Sentinels it learned, epochs): a role that templates the file on every run erases
that knowledge. This module writes the file only when it does not monitor the
master yet (a new host), and otherwise changes settings with SENTINEL SET, which
Sentinel persists itself.
"""

DOCUMENTATION = r"""
module: redis_sentinel
short_description: Write a Sentinel's config once, change its settings live, report the primary
description:
  - With O(query), only reads the running Sentinel (never writes, never changes).
  - Otherwise, when O(conf.path) does not monitor O(name) yet, writes O(conf.content) (owner, group, mode) and
    reports RV(written); else leaves the file alone.
  - When the Sentinel runs (O(service) active, O(socket) there), it logs in with O(password), reads
    C(SENTINEL MASTER) and sets with C(SENTINEL SET) every one of O(settings) whose value differs.
options:
  name: {description: The monitored master's name., type: str, required: true}
  socket: {description: The Sentinel's unix socket., type: path, required: true}
  password: {description: The Sentinel's own password (its requirepass)., type: str, required: true}
  service: {description: The Sentinel's systemd unit., type: str, required: true}
  conf:
    description: The Sentinel's config file, written only if it does not monitor O(name) yet.
    type: dict
    suboptions:
      path: {description: The file., type: path, required: true}
      content: {description: Its content (never shown; it holds passwords)., type: str, required: true}
      owner: {description: Its owner., type: str, default: root}
      group: {description: Its group., type: str, default: root}
      mode: {description: Its mode (octal)., type: str, default: "0640"}
  settings: {description: "SENTINEL SET options and their values (down-after-milliseconds, ...).", type: dict, default: {}}
  query: {description: Read only., type: bool, default: false}
  timeout: {description: Seconds for the connection., type: int, default: 5}
author: redis-vps developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Write the Sentinel's config once, change its settings live
  redis_vps.server.redis_sentinel:
    name: queue
    socket: /run/sentinel/sentinel.sock
    password: "{{ redis_credentials.sentinel }}"
    service: redis-sentinel.service
    conf:
      path: /etc/redis/sentinel.conf
      content: "{{ lookup('ansible.builtin.template', 'sentinel.conf.j2') }}"
      owner: redis
      group: redis
      mode: "0640"
    settings:
      down-after-milliseconds: 5000
      failover-timeout: 60000
      parallel-syncs: 1
      quorum: 2
  register: sentinel

- name: Ask this host's Sentinel which host is the primary
  redis_vps.server.redis_sentinel:
    name: queue
    socket: /run/sentinel/sentinel.sock
    password: "{{ redis_credentials.sentinel }}"
    service: redis-sentinel.service
    query: true
  check_mode: false
  register: seen
"""

RETURN = r"""
written: {description: Whether the config file was written (a new Sentinel)., type: bool, returned: always}
running: {description: Whether the Sentinel runs., type: bool, returned: always}
enabled: {description: Whether its unit starts at boot., type: bool, returned: always}
masked: {description: Whether its unit is masked., type: bool, returned: always}
primary: {description: "The primary it follows, address:port (empty when it does not answer).", type: str, returned: always}
applied: {description: "Settings changed live: name -> {before, after}.", type: dict, returned: always}
view: {description: "Its view: flags, number of replicas and of other Sentinels, quorum.", type: dict, returned: when running}
"""

import grp
import os
import pwd
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.redis_vps.server.plugins.module_utils.redis_resp import RedisError, connect


def monitors(text, name):
    """Whether a Sentinel config file monitors master `name`."""
    return bool(re.search(r"^\s*sentinel\s+monitor\s+%s\s" % re.escape(name), text or "", re.MULTILINE))


def pairs(flat):
    """SENTINEL MASTER's flat reply as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def settings_to_change(master, settings):
    """(name, before, after) for each wanted setting whose running value differs."""
    return [(key, master.get(key), str(value)) for key, value in sorted(settings.items())
            if master.get(key) != str(value)]


def write(spec):
    path = spec["path"]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".%s." % os.path.basename(path))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(spec["content"])
    os.chown(tmp, pwd.getpwnam(spec.get("owner") or "root").pw_uid, grp.getgrnam(spec.get("group") or "root").gr_gid)
    os.chmod(tmp, int(spec.get("mode") or "0640", 8))
    os.replace(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            socket=dict(type="path", required=True),
            password=dict(type="str", required=True, no_log=True),
            service=dict(type="str", required=True),
            conf=dict(type="dict", options=dict(path=dict(type="path", required=True),
                                                content=dict(type="str", required=True, no_log=True),
                                                owner=dict(type="str", default="root"),
                                                group=dict(type="str", default="root"),
                                                mode=dict(type="str", default="0640"))),
            settings=dict(type="dict", default={}),
            query=dict(type="bool", default=False),
            timeout=dict(type="int", default=5),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, written=False, running=False, enabled=False, masked=False, primary="", applied={})
    rc, out, err = module.run_command(["systemctl", "show", "--property=ActiveState,UnitFileState", params["service"]])
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    result["enabled"] = state.get("UnitFileState") == "enabled"
    result["masked"] = state.get("UnitFileState", "").startswith("masked")
    active = state.get("ActiveState") in ("active", "activating", "reloading")

    if not params["query"] and params["conf"]:
        try:
            with open(params["conf"]["path"], encoding="utf-8") as handle:
                current = handle.read()
        except FileNotFoundError:
            current = None
        if not monitors(current, params["name"]):
            if not module.check_mode:
                write(params["conf"])
            result["written"] = result["changed"] = True

    if not active or not os.path.exists(params["socket"]) or result["written"]:
        module.exit_json(**result)
    result["running"] = True
    try:
        conn = connect(params["socket"], params["timeout"])
        try:
            conn.call("AUTH", params["password"])
            master = pairs(conn.call("SENTINEL", "MASTER", params["name"]))
            result["primary"] = "%s:%s" % (master.get("ip"), master.get("port"))
            result["view"] = {key: master.get(key) for key in ("flags", "num-slaves", "num-other-sentinels", "quorum",
                                                               "failover-timeout", "down-after-milliseconds")}
            if not params["query"]:
                for key, before, after in settings_to_change(master, params["settings"]):
                    if not module.check_mode:
                        conn.call("SENTINEL", "SET", params["name"], key, after)
                    result["applied"][key] = dict(before=before, after=after)
                    result["changed"] = True
        finally:
            conn.close()
    except (RedisError, OSError) as exc:
        if params["query"]:
            result["error"] = str(exc)
            module.exit_json(**result)
        module.fail_json(msg="Sentinel at %s: %s" % (params["socket"], exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
