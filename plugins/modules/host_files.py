#!/usr/bin/python
"""A role's folders, files, kernel values, group memberships and units in one module run: an
idempotent rerun of the kernel tuning, the hardening, PHP's sessions, the exporters or the
backups costs one module run each (a file, template, sysctl, user and systemd task cost one
or two apiece), and every role that uses it shares one module build per run."""

DOCUMENTATION = r"""
module: host_files
short_description: Write a role's folders and files, apply kernel values live, start, stop or mask its units, in one run
description:
  - Each folder of O(dirs) is made where it is missing (with its parents), its owner and mode set where they differ.
  - Each file of O(files) whose content (byte for byte), owner or mode differs is written (every new content checked
    first with its O(files[].validate) command, before any file is written; then a temporary file with its final
    owner and mode renamed into place).
  - Each path of O(absent) is removed where it is there (a file of an earlier release).
  - Each kernel value of O(sysctl) and O(sysfs) that differs from the running one is written, where the kernel lets
    it be written; where not (a container's read-only C(/proc/sys) and C(/sys)), it is listed in RV(live_skipped).
  - Each user of O(user_groups) joins its group where it is not a member yet (C(usermod -a -G)).
  - When a written file is a unit file or drop-in (under C(/etc/systemd/system)), or O(daemon_reload) asks, systemd
    reloads its units.
  - Each unit of O(units) is enabled and started where it is not so already (one C(systemctl show) reads them all);
    a unit that was running and that a changed file or group membership names in its C(notify) (or O(units[].reload))
    is reloaded or restarted, after its O(units[].check) command passed. A unit of O(units[].state=stopped) is stopped
    and disabled where it runs or is enabled; one of O(units[].state=masked) is masked (a link to C(/dev/null) in
    C(/etc/systemd/system), where nothing is there yet) and stopped where it runs.
  - The O(probes) commands run last (read-only, also in check mode); their output is returned, for the role to judge.
  - Check mode reports what would change and changes nothing; with C(--diff) the files' changes are shown, except
    those whose content is in O(secrets).
options:
  dirs:
    description: Folders to have on the host, with their owner and mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The folder (made with its parents where missing).
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
  absent:
    description: Files to remove where they are there (reported in RV(removed)).
    type: list
    elements: path
    default: []
  daemon_reload:
    description: Reload systemd's units before the O(units) are handled (their files changed outside this run).
    type: bool
    default: false
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
      state:
        description:
          - C(running) - enabled and started as O(units[].enabled) and O(units[].started) say, reloaded or restarted
            when notified.
          - C(stopped) - stopped and disabled where it runs or is enabled (a timer turned off).
          - C(masked) - a link to C(/dev/null) as C(/etc/systemd/system/NAME) (a file already there, the admin's own
            unit, is left as it is), and stopped where it runs; systemd reloads its units when its package is installed.
            Masked before its package is installed, the package never starts it.
        type: str
        choices: [running, stopped, masked]
        default: running
      enabled:
        description: Enabled at boot (O(units[].state=running)).
        type: bool
        default: true
      started:
        description: Started when it is not running (O(units[].state=running)).
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
  record:
    description:
      - A name (lowercase letters, digits, C(_)) for what this run puts in place. After a run that did all its options
        ask, the record C(/var/lib/redis-vps/host_files/NAME.json) (root only) keeps the digest of the options and what
        they put in place (each file's SHA-256, owner and mode; the folders, removed paths, kernel values in force,
        group memberships, units' wanted states, a digest of each probe's exit status and output).
        M(redis_vps.server.redis_host) with its C(records) option tells which records the host still holds, as it is
        now (running the probes again).
      - Writing the record is bookkeeping, not reported as a change; not written in check mode. A role that judges
        the probes' output after the run removes the record when its judgement fails (vps_hardening does).
    type: str
  recorded:
    description:
      - The digests of the records the host still held, as M(redis_vps.server.redis_host) read them earlier in the run
        (its RV(redis_vps.server.redis_host#module:records)); empty, or no O(record), the module always runs.
      - "Read on the controller by the collection's action plugin: when the digest of this task's options equals
        O(recorded[record]), the host holds everything they ask and the module run is skipped (RV(recorded) true,
        nothing changed, RV(probes) empty: their output is what the recorded run judged). Never skipped with
        O(daemon_reload) or a O(units[].reload) that is true: those act on every run."
      - Give it only what a read of the same run returned, from before anything else changed the host outside this
        module (site.yml passes it only when no package was installed).
    type: dict
    default: {}
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
- name: Mask the package's own unit before the package is installed
  redis_vps.server.host_files:
    units:
      - name: redis-server.service
        state: masked

- name: A program, its timer's units and a root-only folder; the timer restarted when its units change
  redis_vps.server.host_files:
    dirs:
      - {path: /var/backups/redis/queue, owner: redis, group: redis, mode: "0700"}
    files:
      - path: /etc/systemd/system/redis-vps-backup@.timer
        content: "{{ lookup('ansible.builtin.template', 'redis-vps-backup@.timer.j2') }}"
        notify: [redis-vps-backup@queue.timer]
    units:
      - name: redis-vps-backup@queue.timer
        on_change: restart

# With a record: no module run where the host still holds what the last run put in place
# (host_files_recorded: the validation's read, redis_vps.server.redis_host with records: true).
- name: Kernel settings for Redis, at boot and now
  redis_vps.server.host_files:
    files:
      - path: /etc/sysctl.d/60-redis.conf
        content: "vm.overcommit_memory=1\n"
    sysctl:
      vm.overcommit_memory: 1
    sysfs:
      /sys/kernel/mm/transparent_hugepage/enabled: never
    record: redis_kernel
    recorded: "{{ host_files_recorded | default({}) }}"

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
dirs:
  description: The folders made, or whose owner or mode was set (in check mode, to be).
  returned: always
  type: list
  elements: str
  sample: [/var/backups/redis/queue]
removed:
  description: The files of O(absent) removed (or, in check mode, to be).
  returned: always
  type: list
  elements: str
  sample: [/etc/ssh/sshd_config.d/50-redis-vps-hardening.conf]
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
  description: Whether systemd reloaded its units (a unit file or drop-in was written, or O(daemon_reload)).
  returned: always
  type: bool
  sample: false
masked:
  description: The units of O(units[].state=masked) masked now (or, in check mode, to be).
  returned: always
  type: list
  elements: str
  sample: [redis-server.service]
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
    stopped:
      description: It was stopped now (O(units[].state=stopped) or V(masked)).
      type: bool
    masked_now:
      description: It was masked now.
      type: bool
probes:
  description: Name -> the result of that O(probes) command.
  returned: always
  type: dict
  sample: {sshd: {rc: 0, stdout: "port 22\n", stdout_lines: ["port 22"], stderr: ""}}
recorded:
  description: True where the module did not run, the host holding what O(record) recorded (see O(recorded)).
  returned: when the module run was skipped
  type: bool
  sample: true
"""

import errno
import os

from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule
from ansible_collections.redis_vps.server.plugins.module_utils import files as host_file
from ansible_collections.redis_vps.server.plugins.module_utils import records, systemd


def wanted_value(value):
    return " ".join(str(value).split())


def sync_kernel(module, result, path, key, value):
    """One kernel value: written where it differs and the kernel lets it be written."""
    try:
        before = records.current_choice(host_file.read(path))
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
        if not spec["validate"] or host_file.read(spec["path"], exact=True) == content:
            continue
        try:
            host_file.check_content(module.run_command, spec["validate"], spec["path"], content)
        except host_file.CheckFailed as exc:
            module.fail_json(msg="%s does not pass %s (nothing was written): %s" % (spec["path"], spec["validate"], exc),
                             **result)
        except (OSError, ValueError) as exc:
            module.fail_json(msg="cannot check %s: %s" % (spec["path"], exc), **result)


def sync_files(module, result, notified, diffs, files):
    if not module.check_mode:
        check_files(module, result, files)
    for spec, content in files:
        try:
            done = host_file.sync(spec["path"], content, spec["owner"], spec["group"], spec["mode"],
                                  backup=module.backup_local if spec["backup"] else None,
                                  run_command=module.run_command, check_mode=module.check_mode, exact=True)
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


def sync_dirs(module, result):
    for spec in module.params["dirs"]:
        try:
            done = host_file.sync_dir(spec["path"], spec["owner"], spec["group"], spec["mode"], check_mode=module.check_mode)
        except (OSError, KeyError, ValueError) as exc:
            module.fail_json(msg="cannot make the folder %s: %s" % (spec["path"], exc), **result)
        if done:
            result["dirs"].append(spec["path"])
            result["changed"] = True


MASK_DIR = records.MASK_DIR
# Where packages install their units (Debian 13 has merged /usr: /lib is a link to /usr/lib).
PACKAGE_UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system")


def mask_units(module, result):
    """Each unit of state masked gets its link to /dev/null where nothing is there yet. Returns
    whether systemd must reload its units (one of them is installed: its package is there)."""
    reload_needed = False
    for spec in module.params["units"]:
        if spec["state"] != "masked":
            continue
        path = os.path.join(MASK_DIR, spec["name"])
        if os.path.lexists(path):
            continue
        if not module.check_mode:
            try:
                os.symlink("/dev/null", path)
            except OSError as exc:
                module.fail_json(msg="cannot mask %s: %s" % (spec["name"], exc), **result)
        result["masked"].append(spec["name"])
        result["changed"] = True
        reload_needed |= any(os.path.exists(os.path.join(folder, spec["name"])) for folder in PACKAGE_UNIT_DIRS)
    return reload_needed


def remove_files(module, result):
    for path in module.params["absent"]:
        if not os.path.lexists(path):
            continue
        if not module.check_mode:
            try:
                os.unlink(path)
            except OSError as exc:
                module.fail_json(msg="cannot remove %s: %s" % (path, exc), **result)
        result["removed"].append(path)
        result["changed"] = True


def sync_groups(module, result, notified):
    for spec in module.params["user_groups"]:
        try:
            member = records.is_member(spec["user"], spec["group"])
        except KeyError as exc:
            module.fail_json(msg="user_groups: no such user or group: %s" % exc, **result)
        if member:
            continue
        if not module.check_mode:
            run(module, result, ["usermod", "-a", "-G", spec["group"], spec["user"]], "adding %s to %s" % (spec["user"], spec["group"]))
        result["groups_added"].append("%s:%s" % (spec["user"], spec["group"]))
        result["changed"] = True
        notified.update(spec["notify"])


def unit_states(module, result):
    """unit -> its properties (one systemctl show for them all)."""
    try:
        return systemd.show(module.run_command, [spec["name"] for spec in module.params["units"]])
    except RuntimeError as exc:
        module.fail_json(msg=str(exc), **result)


def stop_unit(module, result, spec, state, done):
    """A unit of state stopped (stopped and disabled) or masked (stopped) where it is not so."""
    name = spec["name"]
    disable = spec["state"] == "stopped" and state["enabled"]
    if not state["active"] and not disable:
        return
    if not module.check_mode:
        run(module, result, ["systemctl", "disable", "--now", name] if disable else ["systemctl", "stop", name],
            "stopping " + name)
    done["stopped"] = state["active"]
    result["changed"] = True


def sync_units(module, result, notified, states):
    """Each unit as its spec asks. The units to enable are enabled in one systemctl call, then those
    to start are started in one (systemd starts them side by side: two Redis instances each wait
    for their own readiness), then the notified ones are reloaded or restarted one by one, each
    after its check."""
    enable, start, notified_specs = [], [], []
    for spec in module.params["units"]:
        name = spec["name"]
        state = systemd.summary(states.get(name, {}))
        done = dict(state, started=False, enabled_now=False, notified=name in notified or spec["reload"],
                    reloaded=False, restarted=False, stopped=False, masked_now=name in result["masked"])
        result["units"][name] = done
        if spec["state"] != "running":
            stop_unit(module, result, spec, state, done)
            continue
        if spec["enabled"] and not state["enabled"]:
            enable.append(name)
            done["enabled_now"] = result["changed"] = True
        if spec["started"] and not state["active"]:
            start.append(name)
            done["started"] = result["changed"] = True
        elif done["notified"] and state["active"]:
            notified_specs.append(spec)
            done["reloaded" if spec["on_change"] == "reload" else "restarted"] = True
            result["changed"] = True
    if module.check_mode:
        return
    if enable:
        run(module, result, ["systemctl", "enable"] + enable, "enabling " + ", ".join(enable))
    if start:
        run(module, result, ["systemctl", "start"] + start, "starting " + ", ".join(start))
    for spec in notified_specs:
        if spec["check"]:
            run(module, result, spec["check"], "the check before reloading " + spec["name"])
        run(module, result, ["systemctl", "reload" if spec["on_change"] == "reload" else "restart", spec["name"]],
            "%sing %s" % (spec["on_change"], spec["name"]))


def write_record(module, result, files):
    """O(record): what this run put in place, for the next run's check (module_utils/records.py)."""
    name = module.params["record"]
    if not name or module.check_mode:
        return
    try:
        records.write(name, records.snapshot(module.params, dict((spec["path"], content) for spec, content in files),
                                             result["probes"]))
    except (OSError, KeyError, ValueError) as exc:
        module.fail_json(msg="cannot write the record %s: %s" % (records.path_of(name), exc), **result)


def main():
    module = QuietModule(
        argument_spec=records.ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = module.params
    result = records.unchanged_result()
    if params["record"] and not records.NAME.match(params["record"]):
        module.fail_json(msg="record: %r is not a name of lowercase letters, digits and _" % params["record"], **result)
    files = contents(module, result)
    notified, diffs = set(), []
    sync_dirs(module, result)
    sync_files(module, result, notified, diffs, files)
    remove_files(module, result)
    for path, key, value in records.kernel_values(params):
        sync_kernel(module, result, path, key, value)
    sync_groups(module, result, notified)
    unknown = notified - set(spec["name"] for spec in params["units"])
    if unknown:
        module.fail_json(msg="notify names units that are not in units: %s" % ", ".join(sorted(unknown)), **result)
    reload_masked = mask_units(module, result)
    if params["daemon_reload"] or reload_masked or any(path.startswith(MASK_DIR + "/") for path in result["written"]):
        if not module.check_mode:
            run(module, result, ["systemctl", "daemon-reload"], "reloading systemd's units")
        result["daemon_reload"] = True
        result["changed"] |= params["daemon_reload"]
    sync_units(module, result, notified, unit_states(module, result))
    for probe in params["probes"]:
        rc, out, err = module.run_command(probe["argv"])
        result["probes"][probe["name"]] = dict(rc=rc, stdout=out, stdout_lines=out.splitlines(), stderr=err)
    if diffs and module._diff:
        result["diff"] = diffs
    write_record(module, result, files)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
