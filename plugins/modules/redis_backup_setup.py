#!/usr/bin/python
"""Put the backup program, its units, settings and secrets in place and the timers in
the state asked, in one module run per host (a rerun that changes nothing costs one
module run: a file, template and systemd task each would cost one apiece)."""

DOCUMENTATION = r"""
module: redis_backup_setup
short_description: Write the backup's files and folders, enable or disable its timers, in one run
description:
  - Each folder of O(dirs) is created, its owner and mode corrected.
  - Each file of O(files) whose content, owner or mode differs is written (a temporary file with its final owner
    and mode, renamed into place). Contents are never shown (some are secrets).
  - When a written file is under /etc/systemd/system, systemd reloads its units.
  - Each timer of O(timers) is enabled and started (O(enabled) true) or stopped and disabled (false), only where
    it is not so already; a timer whose unit files changed is restarted so that a new schedule applies.
options:
  dirs:
    description: Folders to create, with their owner and mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The folder.
        type: path
        required: true
      owner:
        description: Its owner.
        type: str
        default: root
      group:
        description: Its group.
        type: str
        default: root
      mode:
        description: Its mode, octal.
        type: str
        default: "0755"
  files:
    description: Files to write, with their owner and mode.
    type: list
    elements: dict
    default: []
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
        description: Its owner.
        type: str
        default: root
      group:
        description: Its group.
        type: str
        default: root
      mode:
        description: Its mode, octal.
        type: str
        default: "0644"
  timers:
    description: Timer units.
    type: list
    elements: str
    default: []
  enabled:
    description: Whether the timers run.
    type: bool
    default: true
attributes:
  check_mode:
    description: Reports what it would write and start, changing nothing.
    support: full
  diff_mode:
    description: No diff is returned (the contents may be secrets).
    support: none
author: redis-vps developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Put the backup program, units, settings and secrets in place, and start the timers
  redis_vps.server.redis_backup_setup:
    dirs:
      - {path: /etc/redis-vps-backup, mode: "0755"}
      - {path: /var/backups/redis/queue, owner: redis, group: redis, mode: "0700"}
    files:
      - path: /usr/local/sbin/redis-vps-backup
        content: "{{ lookup('ansible.builtin.file', 'redis_vps_backup.py') }}\n"
        mode: "0755"
      - path: /etc/systemd/system/redis-vps-backup@.timer
        content: "{{ lookup('ansible.builtin.template', 'redis-vps-backup@.timer.j2') }}"
      - path: /etc/redis-vps-backup/backup-password
        content: "{{ redis_credentials.backup }}\n"
        mode: "0600"
    timers: [redis-vps-backup@queue.timer]
    enabled: true
"""

RETURN = r"""
written:
  description: Files written.
  type: list
  elements: str
  returned: always
  sample: [/etc/systemd/system/redis-vps-backup@.timer]
timers:
  description: "Timer -> C({active, enabled}) as found."
  type: dict
  returned: always
  sample: {"redis-vps-backup@queue.timer": {active: true, enabled: true}}
"""

import grp
import os
import pwd
import tempfile

from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule


def ids(spec):
    return pwd.getpwnam(spec["owner"]).pw_uid, grp.getgrnam(spec["group"]).gr_gid, int(spec["mode"], 8)


def sync_dir(module, spec):
    uid, gid, mode = ids(spec)
    try:
        st = os.stat(spec["path"])
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, mode):
            return False
    except FileNotFoundError:
        if not module.check_mode:
            os.makedirs(spec["path"], mode=0o700)
    if not module.check_mode:
        os.chown(spec["path"], uid, gid)
        os.chmod(spec["path"], mode)
    return True


def sync_file(module, spec):
    uid, gid, mode = ids(spec)
    path, content = spec["path"], spec["content"].encode()
    try:
        with open(path, "rb") as handle:
            same = handle.read() == content
        st = os.stat(path)
        if same and (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, mode):
            return False
    except FileNotFoundError:
        pass
    if not module.check_mode:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.chown(tmp, uid, gid)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            module.fail_json(msg="cannot write %s: %s" % (path, exc))
    return True


def systemctl(module, *args):
    rc, out, err = module.run_command(["systemctl"] + list(args))
    if rc != 0:
        module.fail_json(msg="systemctl %s: %s" % (" ".join(args), err.strip()))
    return out


def main():
    entry = dict(path=dict(type="path", required=True), owner=dict(type="str", default="root"),
                 group=dict(type="str", default="root"), mode=dict(type="str", default="0644"))
    module = QuietModule(
        argument_spec=dict(
            dirs=dict(type="list", elements="dict", default=[], options=dict(entry, mode=dict(type="str", default="0755"))),
            files=dict(type="list", elements="dict", default=[], no_log=False,
                       options=dict(entry, content=dict(type="str", required=True, no_log=True))),
            timers=dict(type="list", elements="str", default=[]),
            enabled=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, written=[], timers={})
    for spec in params["dirs"]:
        result["changed"] |= sync_dir(module, spec)
    for spec in params["files"]:
        if sync_file(module, spec):
            result["written"].append(spec["path"])
            result["changed"] = True
    units_changed = any(p.startswith("/etc/systemd/system/") for p in result["written"])
    if units_changed and not module.check_mode:
        systemctl(module, "daemon-reload")
    if params["timers"]:
        out = systemctl(module, "show", "--property=ActiveState,UnitFileState", *params["timers"])
        blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
                  for block in out.strip().split("\n\n")]
        for timer, state in zip(params["timers"], blocks):
            active, enabled = state.get("ActiveState") == "active", state.get("UnitFileState") == "enabled"
            result["timers"][timer] = dict(active=active, enabled=enabled)
            if params["enabled"] and (not active or not enabled or units_changed):
                if not module.check_mode:
                    systemctl(module, "enable", timer)
                    systemctl(module, "restart" if active else "start", timer)
                result["changed"] = True
            elif not params["enabled"] and (active or enabled):
                if not module.check_mode:
                    systemctl(module, "disable", "--now", timer)
                result["changed"] = True
    module.exit_json(**result)


if __name__ == "__main__":
    main()
