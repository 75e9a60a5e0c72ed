#!/usr/bin/python
"""A role's files, kernel values, group memberships and units in one module run: an
idempotent rerun of the kernel tuning, the hardening or PHP's sessions costs one module
run each (a template, copy, sysctl, user and systemd task cost one or two apiece)."""

DOCUMENTATION = r"""
module: host_files
short_description: Write a role's files, apply kernel values live, start its units and reload them, in one run
description:
  - Each file of O(files) whose content, owner or mode differs is written (every new content checked first with its
    O(files[].validate) command, before any file is written; then a temporary file with its final owner and mode
    renamed into place).
  - Each kernel value of O(sysctl) and O(sysfs) that differs from the running one is written, where the kernel lets
    it be written; where not (a container's read-only C(/proc/sys) and C(/sys)), it is listed in RV(live_skipped).
  - Each user of O(user_groups) joins its group where it is not a member yet (C(usermod -a -G)).
  - When a written file is a unit file or drop-in (under C(/etc/systemd/system)), systemd reloads its units.
  - Each unit of O(units) is enabled and started where it is not so already (one C(systemctl show) reads them all);
    a unit that was running and that a changed file or group membership names in its C(notify) (or O(units[].reload))
    is reloaded or restarted, after its O(units[].check) command passed.
  - The O(probes) commands run last (read-only, also in check mode); their output is returned, for the role to judge.
  - Check mode reports what would change and changes nothing; with C(--diff) the files' changes are shown, except
    those whose content is in O(secrets).
options:
  files:
    description: Files to have on the host.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      content:
        description:
          - Its content, shown in diffs. Without it, the content is O(secrets)' entry for this path (a password in it).
        type: str
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
      validate:
        description:
          - A command with C(%s), run on a temporary copy of the new content before any file is written (as the
            template module's C(validate)); when it fails, no file is written and the module fails with its words.
          - C(nft) - an nftables fragment, included by /etc/nftables.conf's C(table inet filter) (roles/vps_hardening),
            checked with C(nft -c) after a stub of that table; skipped where nft is not installed (no firewall loads
            the fragments).
        type: str
      backup:
        description: Keep a copy of the file it replaces; its path is returned in RV(backups).
        type: bool
        default: false
      notify:
        description: Units of O(units) to reload or restart when this file is written.
        type: list
        elements: str
        default: []
  secrets:
    description:
      - Path -> the content of a file of O(files) that holds a secret (O(files[].content) left out). Never shown in
        diffs, output or logs (an option of its own, never logged; AnsibleModule logs a list of files with their contents
        escaped, where a multi-line secret would not be recognised and hidden).
    type: dict
    default: {}
  sysctl:
    description: Kernel parameters (C(vm.overcommit_memory)) and their values, applied live where they differ.
    type: dict
    default: {}
  sysfs:
    description:
      - Files under C(/sys) and their values, written where they differ. A file that lists choices with the one in
        force in brackets (C(always madvise [never])) is compared by that choice.
    type: dict
    default: {}
  user_groups:
    description: Users that must be members of a group.
    type: list
    elements: dict
    default: []
    suboptions:
      user:
        description: The user.
        type: str
        required: true
      group:
        description: The group it joins (its other groups are kept).
        type: str
        required: true
      notify:
        description: Units of O(units) to reload or restart when the user joins the group.
        type: list
        elements: str
        default: []
  units:
    description: systemd units to have enabled and running, and what to do when a file of theirs changes.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The unit (C(nftables.service)).
        type: str
        required: true
      enabled:
        description: Enabled at boot.
        type: bool
        default: true
      started:
        description: Started when it is not running.
        type: bool
        default: true
      on_change:
        description: What a notification does to the unit when it was running already (a unit started now reads its files).
        type: str
        choices: [reload, restart]
        default: reload
      reload:
        description: Reload or restart it as if notified (something outside this module run changed its files).
        type: bool
        default: false
      check:
        description: A command (an argv) that must pass before the unit is reloaded or restarted (C(php-fpm8.4 --test)).
        type: list
        elements: str
        default: []
  probes:
    description: Read-only commands run after the files are written (also in check mode); their output is returned.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The key of its result in RV(probes).
        type: str
        required: true
      argv:
        description: The command.
        type: list
        elements: str
        required: true
attributes:
  check_mode:
    description: Reports what it would write, apply, add and start, changing nothing (the probes still run).
    support: full
  diff_mode:
    description: The changes of the files whose content is not in O(secrets).
    support: full
author: redis-vps developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Kernel settings for Redis, at boot and now
  redis_vps.server.host_files:
    files:
      - path: /etc/sysctl.d/60-redis.conf
        content: "vm.overcommit_memory=1\n"
    sysctl:
      vm.overcommit_memory: 1
    sysfs:
      /sys/kernel/mm/transparent_hugepage/enabled: never

- name: A firewall checked before it replaces the old one, loaded by its unit
  redis_vps.server.host_files:
    files:
      - path: /etc/nftables.conf
        content: "{{ lookup('ansible.builtin.template', 'nftables.conf.j2') }}"
        mode: "0600"
        validate: /usr/sbin/nft -c -f %s
        notify: [nftables.service]
    units:
      - name: nftables.service

- name: PHP sessions with a password, FPM reloaded gracefully after a test
  redis_vps.server.host_files:
    files:
      - path: /etc/php/8.4/fpm/conf.d/90-redis-sessions.ini
        mode: "0600"
        notify: [php8.4-fpm.service]
    secrets:
      /etc/php/8.4/fpm/conf.d/90-redis-sessions.ini: "{{ lookup('ansible.builtin.template', 'redis-sessions.ini.j2') }}"
    user_groups:
      - {user: www-data, group: redis, notify: [php8.4-fpm.service]}
    units:
      - name: php8.4-fpm.service
        check: [php-fpm8.4, --test]
"""

RETURN = r"""
written:
  description: The files written (or, in check mode, to be written).
  returned: always
  type: list
  elements: str
  sample: [/etc/nftables.conf]
backups:
  description: File -> the copy of what it held before (O(files[].backup)).
  returned: always
  type: dict
  sample: {/etc/ssh/sshd_config.d/00-redis-vps-hardening.conf: /etc/ssh/sshd_config.d/00-redis-vps-hardening.conf.1234.2026-12-01@12:00:00~}
live:
  description: Kernel values changed now (C(sysctl) names and C(sysfs) paths), with their values before and after.
  returned: always
  type: dict
  sample: {vm.overcommit_memory: {before: "0", after: "1"}}
live_skipped:
  description: Kernel values that differ but cannot be written here (a read-only C(/proc/sys) or C(/sys)).
  returned: always
  type: list
  elements: str
  sample: [vm.overcommit_memory, /sys/kernel/mm/transparent_hugepage/enabled]
groups_added:
  description: The O(user_groups) memberships added, as C(user:group).
  returned: always
  type: list
  elements: str
  sample: ["www-data:redis"]
daemon_reload:
  description: Whether systemd reloaded its units (a unit file or drop-in was written).
  returned: always
  type: bool
  sample: false
units:
  description: Unit -> its state as found and what was done to it.
  returned: always
  type: dict
  sample: {nftables.service: {active: true, enabled: true, started: false, enabled_now: false, notified: true,
           reloaded: true, restarted: false}}
  contains:
    active:
      description: It was running (or about to) when the module ran.
      type: bool
    enabled:
      description: It was enabled when the module ran.
      type: bool
    started:
      description: It was started now.
      type: bool
    enabled_now:
      description: It was enabled now.
      type: bool
    notified:
      description: A change named it (or O(units[].reload)).
      type: bool
    reloaded:
      description: It was reloaded.
      type: bool
    restarted:
      description: It was restarted.
      type: bool
probes:
  description: Name -> the result of that O(probes) command.
  returned: always
  type: dict
  sample: {sshd: {rc: 0, stdout: "port 22\n", stdout_lines: ["port 22"], stderr: ""}}
"""

import errno
import grp
import os
import pwd

from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule
from ansible_collections.redis_vps.server.plugins.module_utils import files as host_file
from ansible_collections.redis_vps.server.plugins.module_utils import systemd


def current_choice(text):
    """The value in force of a kernel file: `always madvise [never]` -> never."""
    text = (text or "").strip()
    if "[" in text and "]" in text:
        return text[text.index("[") + 1:text.index("]")]
    return " ".join(text.split())


def sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def wanted_value(value):
    return " ".join(str(value).split())


def sync_kernel(module, result, path, key, value):
    """One kernel value: written where it differs and the kernel lets it be written."""
    try:
        before = current_choice(host_file.read(path))
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, exc), **result)
    after = wanted_value(value)
    if before == after:
        return
    if not os.access(path, os.W_OK):
        result["live_skipped"].append(key)
        return
    if not module.check_mode:
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(after + "\n")
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                result["live_skipped"].append(key)
                return
            module.fail_json(msg="cannot write %s to %s: %s" % (after, path, exc), **result)
    result["live"][key] = dict(before=before, after=after)
    result["changed"] = True


def is_member(user, group):
    entry = grp.getgrnam(group)
    return user in entry.gr_mem or pwd.getpwnam(user).pw_gid == entry.gr_gid


def run(module, result, argv, what):
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg="%s (%s) failed: %s" % (what, " ".join(argv), " ".join((err or out).split())[-600:]), **result)
    return out


def contents(module, result):
    """(spec, content) of each of O(files): its content, or its entry in O(secrets)."""
    out = []
    for spec in module.params["files"]:
        content = spec["content"] if spec["content"] is not None else module.params["secrets"].get(spec["path"])
        if content is None:
            module.fail_json(msg="%s has no content and no entry in secrets" % spec["path"], **result)
        out.append((spec, content))
    return out


def check_files(module, result, files):
    """Each new content with a check command is checked before any file is written: one
    that fails leaves every file as it was."""
    for spec, content in files:
        if not spec["validate"] or host_file.read(spec["path"]) == content:
            continue
        try:
            host_file.check_content(module.run_command, spec["validate"], spec["path"], content)
        except host_file.CheckFailed as exc:
            module.fail_json(msg="%s does not pass %s (nothing was written): %s" % (spec["path"], spec["validate"], exc),
                             **result)
        except (OSError, ValueError) as exc:
            module.fail_json(msg="cannot check %s: %s" % (spec["path"], exc), **result)


def sync_files(module, result, notified, diffs):
    files = contents(module, result)
    if not module.check_mode:
        check_files(module, result, files)
    for spec, content in files:
        try:
            done = host_file.sync(spec["path"], content, spec["owner"], spec["group"], spec["mode"],
                                  backup=module.backup_local if spec["backup"] else None,
                                  run_command=module.run_command, check_mode=module.check_mode)
        except (OSError, KeyError, ValueError) as exc:
            module.fail_json(msg="cannot write %s: %s" % (spec["path"], exc), **result)
        result["changed"] |= done["changed"]
        if done["backup"]:
            result["backups"][spec["path"]] = done["backup"]
        if done["written"]:
            result["written"].append(spec["path"])
            notified.update(spec["notify"])
            if spec["content"] is not None:
                diffs.append(dict(before_header=spec["path"], after_header=spec["path"],
                                  before=done["before"] or "", after=content))


def sync_groups(module, result, notified):
    for spec in module.params["user_groups"]:
        try:
            member = is_member(spec["user"], spec["group"])
        except KeyError as exc:
            module.fail_json(msg="user_groups: no such user or group: %s" % exc, **result)
        if member:
            continue
        if not module.check_mode:
            run(module, result, ["usermod", "-a", "-G", spec["group"], spec["user"]], "adding %s to %s" % (spec["user"], spec["group"]))
        result["groups_added"].append("%s:%s" % (spec["user"], spec["group"]))
        result["changed"] = True
        notified.update(spec["notify"])


def sync_units(module, result, notified):
    units = module.params["units"]
    unknown = notified - set(spec["name"] for spec in units)
    if unknown:
        module.fail_json(msg="notify names units that are not in units: %s" % ", ".join(sorted(unknown)), **result)
    if not units:
        return
    try:
        states = systemd.show(module.run_command, [spec["name"] for spec in units])
    except RuntimeError as exc:
        module.fail_json(msg=str(exc), **result)
    for spec in units:
        name = spec["name"]
        state = systemd.summary(states.get(name, {}))
        done = dict(state, started=False, enabled_now=False, notified=name in notified or spec["reload"],
                    reloaded=False, restarted=False)
        result["units"][name] = done
        if spec["enabled"] and not state["enabled"]:
            if not module.check_mode:
                run(module, result, ["systemctl", "enable", name], "enabling " + name)
            done["enabled_now"] = result["changed"] = True
        if spec["started"] and not state["active"]:
            if not module.check_mode:
                run(module, result, ["systemctl", "start", name], "starting " + name)
            done["started"] = result["changed"] = True
        elif done["notified"] and state["active"]:
            if not module.check_mode:
                if spec["check"]:
                    run(module, result, spec["check"], "the check before reloading " + name)
                run(module, result, ["systemctl", "reload" if spec["on_change"] == "reload" else "restart", name],
                    "%sing %s" % (spec["on_change"], name))
            done["reloaded" if spec["on_change"] == "reload" else "restarted"] = True
            result["changed"] = True


ARGUMENT_SPEC = dict(
    # Secret contents are in `secrets`: paths, modes and plain contents come back in diffs.
    files=dict(type="list", elements="dict", default=[],
               options=dict(path=dict(type="path", required=True),
                            content=dict(type="str"),
                            owner=dict(type="str", default="root"),
                            group=dict(type="str", default="root"),
                            mode=dict(type="str", default="0644"),
                            validate=dict(type="str"),
                            backup=dict(type="bool", default=False),
                            notify=dict(type="list", elements="str", default=[]))),
    secrets=dict(type="dict", default={}, no_log=True),
    sysctl=dict(type="dict", default={}),
    sysfs=dict(type="dict", default={}),
    user_groups=dict(type="list", elements="dict", default=[],
                     options=dict(user=dict(type="str", required=True),
                                  group=dict(type="str", required=True),
                                  notify=dict(type="list", elements="str", default=[]))),
    units=dict(type="list", elements="dict", default=[],
               options=dict(name=dict(type="str", required=True),
                            enabled=dict(type="bool", default=True),
                            started=dict(type="bool", default=True),
                            on_change=dict(type="str", choices=["reload", "restart"], default="reload"),
                            reload=dict(type="bool", default=False),
                            check=dict(type="list", elements="str", default=[]))),
    probes=dict(type="list", elements="dict", default=[],
                options=dict(name=dict(type="str", required=True),
                             argv=dict(type="list", elements="str", required=True))),
)


def main():
    module = QuietModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, written=[], backups={}, live={}, live_skipped=[], groups_added=[], daemon_reload=False,
                  units={}, probes={})
    notified, diffs = set(), []
    sync_files(module, result, notified, diffs)
    for name, value in params["sysctl"].items():
        sync_kernel(module, result, sysctl_path(name), name, value)
    for path, value in params["sysfs"].items():
        sync_kernel(module, result, path, path, value)
    sync_groups(module, result, notified)
    if any(path.startswith("/etc/systemd/system/") for path in result["written"]):
        if not module.check_mode:
            run(module, result, ["systemctl", "daemon-reload"], "reloading systemd's units")
        result["daemon_reload"] = True
    sync_units(module, result, notified)
    for probe in params["probes"]:
        rc, out, err = module.run_command(probe["argv"])
        result["probes"][probe["name"]] = dict(rc=rc, stdout=out, stdout_lines=out.splitlines(), stderr=err)
    if diffs and module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
