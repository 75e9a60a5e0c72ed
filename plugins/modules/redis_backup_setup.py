#!/usr/bin/python
"""Put the backup program, its units, settings and secrets in place and the timers in
the state asked, in one module run per host (a rerun that changes nothing costs one
module run: a file, template and systemd task each would cost one apiece). The files and
folders are written by the collection's one file writer (module_utils/files.py), the
timers' states read by its one systemd reader (module_utils/systemd.py)."""

DOCUMENTATION = r"""
module: redis_backup_setup
short_description: Write the backup's files and folders, enable or disable its timers, in one run
description:
  - Each folder of O(dirs) is created, its owner and mode corrected.
  - Each file of O(files) whose content differs, byte for byte, is written (a temporary file with its final owner
    and mode, renamed into place); one whose owner or mode alone differs gets them set. Contents are never shown
    (some are secrets).
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
  description: Files written, or whose owner or mode was set (in check mode, to be).
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

from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule
from ansible_collections.redis_vps.server.plugins.module_utils import files as host_file
from ansible_collections.redis_vps.server.plugins.module_utils import systemd


def sync_dirs(module, result):
    for spec in module.params["dirs"]:
        try:
            result["changed"] |= host_file.sync_dir(spec["path"], spec["owner"], spec["group"], spec["mode"],
                                                    check_mode=module.check_mode)
        except (OSError, KeyError, ValueError) as exc:
            module.fail_json(msg="cannot make the folder %s: %s" % (spec["path"], exc), **result)


def sync_files(module, result):
    """Each file compared byte for byte; one whose content, owner or mode differs is listed in `written`."""
    for spec in module.params["files"]:
        try:
            done = host_file.sync(spec["path"], spec["content"], spec["owner"], spec["group"], spec["mode"],
                                  check_mode=module.check_mode, exact=True)
        except (OSError, KeyError, ValueError) as exc:
            module.fail_json(msg="cannot write %s: %s" % (spec["path"], exc), **result)
        if done["changed"]:
            result["written"].append(spec["path"])
            result["changed"] = True


def systemctl(module, result, *args):
    rc, dummy, err = module.run_command(["systemctl"] + list(args))
    if rc != 0:
        module.fail_json(msg="systemctl %s: %s" % (" ".join(args), err.strip()), **result)


def sync_timers(module, result, units_changed):
    """Each timer enabled and started (or stopped and disabled) where it is not so; one whose
    unit files changed restarted, so that a new schedule applies."""
    params = module.params
    try:
        states = systemd.show(module.run_command, params["timers"])
    except RuntimeError as exc:
        module.fail_json(msg=str(exc), **result)
    for timer in params["timers"]:
        state = systemd.summary(states.get(timer, {}))
        active, enabled = state["active"], state["enabled"]
        result["timers"][timer] = state
        if params["enabled"] and (not active or not enabled or units_changed):
            if not module.check_mode:
                systemctl(module, result, "enable", timer)
                systemctl(module, result, "restart" if active else "start", timer)
            result["changed"] = True
        elif not params["enabled"] and (active or enabled):
            if not module.check_mode:
                systemctl(module, result, "disable", "--now", timer)
            result["changed"] = True


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
    result = dict(changed=False, written=[], timers={})
    sync_dirs(module, result)
    sync_files(module, result)
    units_changed = any(p.startswith("/etc/systemd/system/") for p in result["written"])
    if units_changed and not module.check_mode:
        systemctl(module, result, "daemon-reload")
    sync_timers(module, result, units_changed)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
