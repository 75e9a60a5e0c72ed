# -*- coding: utf-8 -*-
# Copyright: (c) 2026, redis-vps contributors
# MIT License (see LICENSE in the collection)
"""What a host_files run left in place, kept on the host, so that an idempotent rerun needs
no module run to know that nothing has moved.

A host_files run given O(record=NAME) writes, once it has brought the host to what its
options ask, the record /var/lib/redis-vps/host_files/NAME.json (root only): the digest
of its options and what they put in place (each file's SHA-256, owner and mode, each
folder's owner and mode, the paths removed, the kernel values in force, the group
memberships, each unit's wanted state). redis_host (O(records), the validation's one read
of the host) checks every record against the host as it is now and returns the digests
of those that still hold. The host_files action plugin, on the controller, then skips the
module run of a task whose options have the same digest as its record that still holds:
the run would find everything as its options ask and change nothing.

A file edited by hand, a unit stopped, a value changed, a record deleted: the record no
longer holds, the module runs and puts things back, as without records. A run whose
options differ (a new setting, a new password) has another digest and runs. A record is
written only after a run that did everything its options ask, so a failed or killed run
leaves the record it had, which the host no longer matches. The output of the run's
O(probes) is part of its record (the read runs them again): a role that judges that output
after the run removes the record when its judgement fails. A run that acts each time
(O(units[].reload), O(daemon_reload)) is never skipped.

Used by plugins/modules/host_files.py, plugins/modules/redis_host.py and
plugins/action/host_files.py. The standard library only."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import hashlib
import json
import os
import pwd
import re

from ansible_collections.redis_vps.server.plugins.module_utils import files as host_file
from ansible_collections.redis_vps.server.plugins.module_utils import systemd

FOLDER = "/var/lib/redis-vps/host_files"
# Part of every digest: a record written by a host_files whose options meant something else
# never holds for this one.
FORMAT = 1
NAME = re.compile(r"^[a-z0-9_]+$")
MASK_DIR = "/etc/systemd/system"

# host_files' options. Here, not in the module, because a run's digest is defined over them
# after their defaults are applied, in the same way on the controller (the action plugin)
# and on the host (the module).
ARGUMENT_SPEC = dict(
    dirs=dict(type="list", elements="dict", default=[],
              options=dict(path=dict(type="path", required=True),
                           owner=dict(type="str", default="root"),
                           group=dict(type="str", default="root"),
                           mode=dict(type="str", default="0755"))),
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
    absent=dict(type="list", elements="path", default=[]),
    daemon_reload=dict(type="bool", default=False),
    secrets=dict(type="dict", default={}, no_log=True),
    sysctl=dict(type="dict", default={}),
    sysfs=dict(type="dict", default={}),
    user_groups=dict(type="list", elements="dict", default=[],
                     options=dict(user=dict(type="str", required=True),
                                  group=dict(type="str", required=True),
                                  notify=dict(type="list", elements="str", default=[]))),
    units=dict(type="list", elements="dict", default=[],
               options=dict(name=dict(type="str", required=True),
                            state=dict(type="str", choices=["running", "stopped", "masked"], default="running"),
                            enabled=dict(type="bool", default=True),
                            started=dict(type="bool", default=True),
                            on_change=dict(type="str", choices=["reload", "restart"], default="reload"),
                            reload=dict(type="bool", default=False),
                            check=dict(type="list", elements="str", default=[]))),
    probes=dict(type="list", elements="dict", default=[],
                options=dict(name=dict(type="str", required=True),
                             argv=dict(type="list", elements="str", required=True))),
    record=dict(type="str"),
    recorded=dict(type="dict", default={}),
)
# Not part of what a run puts in place.
NOT_DIGESTED = ("record", "recorded")


def digest(params):
    """The digest of a run's options (their defaults applied), record and recorded left out."""
    wanted = dict((key, value) for key, value in params.items() if key not in NOT_DIGESTED)
    text = json.dumps([FORMAT, wanted], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def skippable(params):
    """Whether a run of these options may be skipped when its record holds: not one that acts
    each time (a forced reload, systemd's reload)."""
    return (bool(params.get("record")) and not params["daemon_reload"]
            and not any(unit["reload"] for unit in params["units"]))


def probe_digest(rc, out):
    return hashlib.sha256(json.dumps([rc, out]).encode("utf-8", "surrogateescape")).hexdigest()


def current_choice(text):
    """The value in force of a kernel file: `always madvise [never]` -> never."""
    text = (text or "").strip()
    if "[" in text and "]" in text:
        return text[text.index("[") + 1:text.index("]")]
    return " ".join(text.split())


def sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def kernel_values(params):
    """(path, the key host_files reports it by, the value wanted) of every kernel value of the
    options: O(sysctl)'s by their /proc/sys path, O(sysfs)'s by their own."""
    return ([(sysctl_path(name), name, value) for name, value in params["sysctl"].items()]
            + [(path, path, value) for path, value in params["sysfs"].items()])


def unchanged_result():
    """What host_files returns when it finds nothing to do (the module's start, and the action
    plugin's answer where the run is skipped)."""
    return dict(changed=False, dirs=[], written=[], removed=[], backups={}, live={}, live_skipped=[], groups_added=[],
                daemon_reload=False, masked=[], units={}, probes={})


def file_digest(path):
    """The SHA-256 of a file's bytes, None where it is not there."""
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return None


def attributes(path):
    """[uid, gid, mode] of a path, None where it is not there."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_uid, st.st_gid, st.st_mode & 0o7777]


def is_member(user, group):
    entry = grp.getgrnam(group)
    return user in entry.gr_mem or pwd.getpwnam(user).pw_gid == entry.gr_gid


def snapshot(params, contents, probes):
    """The record of a run that did all its options ask. `contents`: path -> the content
    written (a file's content or its entry in secrets); `probes`: name -> the result of
    that probe (rc, stdout)."""
    files = []
    for spec in params["files"]:
        uid, gid, mode = host_file.ids(spec["owner"], spec["group"], spec["mode"])
        data = contents[spec["path"]].encode("utf-8", "surrogateescape")
        files.append([spec["path"], hashlib.sha256(data).hexdigest(), uid, gid, mode])
    dirs = []
    for spec in params["dirs"]:
        dirs.append([spec["path"]] + list(host_file.ids(spec["owner"], spec["group"], spec["mode"])))
    kernel = dict((path, current_choice(host_file.read(path))) for path, _key, _value in kernel_values(params))
    return dict(format=FORMAT, digest=digest(params), files=files, dirs=dirs, absent=list(params["absent"]),
                kernel=kernel, groups=[[spec["user"], spec["group"]] for spec in params["user_groups"]],
                units=[[spec["name"], spec["state"], spec["enabled"], spec["started"]] for spec in params["units"]],
                probes=[[spec["argv"], probe_digest(probes[spec["name"]]["rc"], probes[spec["name"]]["stdout"])]
                        for spec in params["probes"]])


def path_of(name, folder=None):
    return os.path.join(folder or FOLDER, name + ".json")


def write(name, record, folder=None):
    """Write a record (root only), where it is not there already as it is."""
    folder = folder or FOLDER
    text = json.dumps(record, sort_keys=True) + "\n"
    path = path_of(name, folder)
    if host_file.read(path, exact=True) == text:
        return
    host_file.sync_dir(os.path.dirname(folder), mode="0755")
    host_file.sync_dir(folder, mode="0700")
    host_file.write_atomic(path, text, 0, 0, 0o600)


def load(folder=None, listdir=os.listdir):
    """name -> record, of every record on the host that can be read."""
    folder = folder or FOLDER
    try:
        entries = sorted(listdir(folder))
    except OSError:
        return {}
    out = {}
    for entry in entries:
        name = entry[:-len(".json")]
        if not entry.endswith(".json") or not NAME.match(name):
            continue
        try:
            record = json.loads(host_file.read(os.path.join(folder, entry)) or "null")
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("format") == FORMAT:
            out[name] = record
    return out


def unit_holds(wanted, properties, masked):
    """Whether a unit is as host_files leaves it: [name, state, enabled, started] wanted."""
    state = systemd.summary(properties)
    if wanted[1] == "running":
        return (state["enabled"] or not wanted[2]) and (state["active"] or not wanted[3])
    if wanted[1] == "stopped":
        return not state["active"] and not state["enabled"]
    return masked and not state["active"]


def difference(record, units, run_command, lexists=os.path.lexists):
    """The first thing of a record the host no longer holds (a sentence), or None.
    `units`: unit -> its properties (systemd.show); `run_command` runs the probes again."""
    for path, sha, uid, gid, mode in record["files"]:
        if file_digest(path) != sha or attributes(path) != [uid, gid, mode]:
            return "%s is not as written" % path
    for path, uid, gid, mode in record["dirs"]:
        if attributes(path) != [uid, gid, mode] or not os.path.isdir(path):
            return "the folder %s is not as made" % path
    for path in record["absent"]:
        if lexists(path):
            return "%s is there again" % path
    for path, value in record["kernel"].items():
        if current_choice(host_file.read(path)) != value:
            return "%s is not %s" % (path, value)
    for user, group in record["groups"]:
        try:
            if not is_member(user, group):
                return "%s is not in the group %s" % (user, group)
        except KeyError:
            return "no user %s or group %s" % (user, group)
    for wanted in record["units"]:
        if not unit_holds(wanted, units.get(wanted[0], {}), lexists(os.path.join(MASK_DIR, wanted[0]))):
            return "%s is not %s" % (wanted[0], wanted[1])
    for argv, sha in record["probes"]:
        rc, out, _err = run_command(argv)
        if probe_digest(rc, out) != sha:
            return "%s says something else now" % " ".join(argv)
    return None


def holding(run_command, folder=None, listdir=os.listdir):
    """(name -> digest of every record the host still holds, name -> what no longer holds
    of the others). One systemctl show for the units of every record."""
    found = load(folder, listdir)
    names = sorted(set(unit[0] for record in found.values() for unit in record.get("units", [])))
    units = systemd.show(run_command, names)
    held, moved = {}, {}
    for name, record in found.items():
        try:
            why = difference(record, units, run_command)
        except (KeyError, TypeError, ValueError) as exc:
            why = "the record cannot be read: %s" % exc
        if why:
            moved[name] = why
        else:
            held[name] = record["digest"]
    return held, moved
