#!/usr/bin/python
"""One host's Sentinel of the replicated queue: its config file written once, its
settings changed live, what it knows about the current primary, and the two steps of
a rolling restart (hand this host's primary role to a replica first; wait until this
host's queue replicates again after its restart).

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
  - "A rotation of the Sentinel's password (playbooks/rotate.yml), live: O(acl_hashes) are the passwords the Sentinel
    accepts (C(ACL SETUSER default resetpass), persisted with C(SENTINEL FLUSHCONFIG)), O(auth_pass) the one it logs in
    to the monitored instances with (C(SENTINEL SET auth-pass)), O(sentinel_pass) the one it gives the other Sentinels
    (C(SENTINEL CONFIG SET sentinel-pass)). Each is changed only where it differs; no connection is dropped."
options:
  name: {description: The monitored master's name., type: str, required: true}
  socket: {description: The Sentinel's unix socket., type: path, required: true}
  password:
    description: The Sentinel's own password (its requirepass).
    type: str
    required: true
  fallback_conf:
    description:
      - >-
        The Sentinel's config file. When O(password) is refused (a rotation's phase 1, before this Sentinel accepts the
        new password), the module logs in with the passwords this file holds (C(sentinel sentinel-pass),
        C(sentinel auth-pass), C(requirepass)): the one in force.
    type: path
  acl_hashes:
    description: SHA-256 (hex) of every password the Sentinel must accept (its C(default) user), the new one and, during a rotation, the old one.
    type: list
    elements: str
  auth_pass:
    description: The password the Sentinel logs in to the monitored instances with (C(sentinel auth-pass)); compared with O(fallback_conf)'s.
    type: str
  sentinel_pass:
    description: The password the Sentinel gives the other Sentinels (C(sentinel-pass)).
    type: str
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
  queue:
    description: This host's replicated instance, for O(step_down) and O(wait_synced).
    type: dict
    suboptions:
      socket: {description: Its unix socket., type: path, required: true}
      user: {description: The user to log in as., type: str, default: admin}
      password: {description: That user's password., type: str, required: true}
      conf: {description: Its config file (written back after O(step_down))., type: path}
      address: {description: "Its C(ip:port) as the Sentinels know it.", type: str}
      replid: {description: "With O(wait_synced): the primary's replication id to have (a restored primary's, new since its start).", type: str}
  step_down:
    description:
      - >-
        When O(queue) is the primary, hand its role to a replica before its restart, losing no acknowledged write
        (RV(stepped_down)). Writes are refused first (C(min-replicas-to-write) raised: clients get C(NOREPLICAS) at
        once, Sentinel's own traffic is not held up as under C(CLIENT PAUSE)); once every replica has the primary's
        last offset, C(SENTINEL FAILOVER); once the Sentinel names the new primary, the old one is made its replica
        (C(REPLICAOF) and C(CLIENT KILL TYPE normal) in one C(MULTI), as Sentinel itself does, unless a Sentinel did
        it already) and its setting is put back (also after any failure: the primary takes writes again). Once it
        replicates (as with O(wait_synced)), its config file gets back the role's content (written for the restart
        that follows) with the new C(replicaof) line: Sentinel's demotion rewrote it with the old running settings.
      - A replica is left alone, and so is a primary with no replica yet (a group forming).
    type: bool
    default: false
  wait_synced:
    description:
      - Wait until O(queue) is a replica with its link up and no sync in progress (after its restart), or is a primary
        (one that had no replica to hand its role to). With O(queue.replid), only a replica of that primary will do.
    type: bool
    default: false
  wait: {description: Seconds O(step_down) and O(wait_synced) may take., type: int, default: 120}
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
applied: {description: "Settings changed live: name -> {before, after} (passwords: only their names, as C(changed)).", type: dict, returned: always}
view: {description: "Its view: flags, number of replicas and of other Sentinels, quorum.", type: dict, returned: when running}
stepped_down: {description: "Whether O(step_down) handed the primary role over (false: this host was a replica).", type: bool, returned: with O(step_down)}
"""

import grp
import os
import pwd
import re
import tempfile
import time

from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule
from ansible_collections.redis_vps.server.plugins.module_utils.redis_resp import RedisError, connect, parse_info


def monitors(text, name):
    """Whether a Sentinel config file monitors master `name`."""
    return bool(re.search(r"^\s*sentinel\s+monitor\s+%s\s" % re.escape(name), text or "", re.MULTILINE))


def conf_passwords(text, name):
    """The clear passwords a Sentinel config file holds (sentinel-pass, the master's auth-pass,
    requirepass), in that order: after a rotation's phase 1, sentinel-pass is the one in force
    (Sentinel rewrites the file but keeps requirepass as it was at its start)."""
    found = {}
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) >= 3 and words[:2] == ["sentinel", "sentinel-pass"]:
            found.setdefault("sentinel-pass", unquote(words[2]))
        elif len(words) >= 4 and words[:2] == ["sentinel", "auth-pass"] and words[2] == name:
            found.setdefault("auth-pass", unquote(words[3]))
        elif len(words) >= 2 and words[0] == "requirepass":
            found.setdefault("requirepass", unquote(words[1]))
    out = []
    for key in ("sentinel-pass", "auth-pass", "requirepass"):
        if found.get(key) and found[key] not in out:
            out.append(found[key])
    return out


def unquote(word):
    """A value as Sentinel's rewrite writes it ("..." when quoted; the project's passwords are letters and digits)."""
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


def auth_pass_of(text, name):
    """The master's auth-pass in a Sentinel config file ('' when none)."""
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) >= 4 and words[:3] == ["sentinel", "auth-pass", name]:
            return unquote(words[3])
    return ""


def pairs(flat):
    """SENTINEL MASTER's flat reply as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def settings_to_change(master, settings):
    """(name, before, after) for each wanted setting whose running value differs."""
    return [(key, master.get(key), str(value)) for key, value in sorted(settings.items())
            if master.get(key) != str(value)]


def info_fields(text):
    """INFO as parse_info() reads it, a replica line (slave0:ip=...,port=...) as a dict of its own."""
    out = parse_info(text or "")
    for name, value in out.items():
        if re.match(r"^slave[0-9]+$", name):
            out[name] = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    return out


def replicas_of(info):
    """The replicas a primary's INFO replication lists: [{ip, port, state, offset}]."""
    return [value for name, value in sorted(info.items()) if re.match(r"^slave[0-9]+$", name)]


def caught_up(info, target, known):
    """Whether every replica has the primary's stream up to `target` (its offset when writes
    stopped): each one the primary lists is online at that offset or past it, and each one the
    Sentinel knows and does not hold down (`known`: [(ip, port, flags)]) is among them (Sentinel
    may promote any replica it deems good, even one that has just reconnected)."""
    listed = replicas_of(info)
    online = {(r.get("ip"), str(r.get("port"))) for r in listed
              if r.get("state") == "online" and int(r.get("offset", "-1")) >= target}
    if len(online) < len(listed) or not listed:
        return False
    usable = {(ip, str(port)) for ip, port, flags in known
              if not set(flags.split(",")) & {"s_down", "o_down", "disconnected"}}
    return usable <= online


def synced(info, primary=None, replid=None):
    """Whether an instance's INFO replication says it replicates (`primary`: that ip; `replid`: the
    primary's replication id, new at each start of it) with its link up."""
    return (info.get("role") == "slave" and info.get("master_link_status") == "up"
            and info.get("master_sync_in_progress") == "0" and (primary is None or info.get("master_host") == primary)
            and (not replid or info.get("master_replid") == replid))


KEPT = "# Kept from the server (Sentinel's view)"


def with_replicaof(text, host, port):
    """A config file's text with its replicaof (slaveof) lines replaced by one naming host:port,
    where the redis_instance module keeps the server's own lines."""
    lines = [line for line in (text or "").splitlines()
             if line.strip() != KEPT and (not line.strip() or line.strip().startswith("#")
                                          or line.split()[0].lower() not in ("replicaof", "slaveof"))]
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines + ["", KEPT, "replicaof %s %s" % (host, port)]) + "\n"


def rewrite_keeping_owner(path, text):
    """Write `text` to `path` (temporary file, then rename) with the file's owner and mode."""
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".%s." % os.path.basename(path))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)


def until(deadline, what, check, pause=0.2):
    """Call check() until it returns something true; Failed(what) after the deadline."""
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(what)
        time.sleep(pause)


class Failed(Exception):
    """A step of the rolling restart that did not happen in time."""


def login(path, user, password, timeout):
    conn = connect(path, timeout)
    if user:
        conn.call("AUTH", user, password)
    else:
        conn.call("AUTH", password)
    return conn


def wait_replicating(queue, deadline, primary=None, or_primary=False):
    """Wait until the queue replicates (or, with `or_primary`, is a primary: one that had no replica
    to hand its role to comes back as the primary)."""
    def check():
        try:
            conn = login(queue["socket"], queue["user"], queue["password"], 5)
        except (RedisError, OSError):       # restarting, or still loading its data
            return False
        try:
            info = info_fields(conn.call("INFO", "replication"))
            return (or_primary and info.get("role") == "master") or synced(info, primary, queue.get("replid"))
        except RedisError:
            return False
        finally:
            conn.close()
    until(deadline, "%s does not replicate (link up, no sync in progress)" % queue["socket"], check, 0.5)


class Queue:
    """The local queue, logged in again when its connection is cut: Sentinel's own demotion of
    the old primary ends with CLIENT KILL TYPE normal, which can come at any moment after the
    promotion (any Sentinel of the group may send it)."""

    def __init__(self, queue, timeout):
        self.queue, self.timeout, self.conn = queue, timeout, None

    def call(self, *args):
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = login(self.queue["socket"], self.queue["user"], self.queue["password"], self.timeout)
                return self.conn.call(*args)
            except OSError:
                self.close()
                if attempt == 2:
                    raise
        return None

    def replication(self):
        return info_fields(self.call("INFO", "replication"))

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


def step_down(params, deadline):
    """Hand this host's primary role to a replica (see the documentation). True if it did."""
    queue, name = params["queue"], params["name"]
    conn = Queue(queue, params["timeout"])
    sentinel = None
    try:
        info = conn.replication()
        # A replica, or a primary with no replica yet (a group forming: nobody to hand over to).
        if info.get("role") != "master" or not replicas_of(info):
            return False
        sentinel = sentinel_login(params)
        with open(queue["conf"], encoding="utf-8") as handle:
            intended = handle.read()         # the role's new file, for the restart that follows
        fence = conn.call("CONFIG", "GET", "min-replicas-to-write")[1]
        conn.call("CONFIG", "SET", "min-replicas-to-write", "1000")      # no write from now on
        try:
            target = int(conn.replication()["master_repl_offset"])

            def known():
                return [(r.get("ip"), r.get("port"), r.get("flags", "")) for r in map(pairs, sentinel.call("SENTINEL", "REPLICAS", name))]
            until(deadline, "not every replica has the primary's last write",
                  lambda: caught_up(conn.replication(), target, known()))

            def ask_failover():
                try:
                    return sentinel.call("SENTINEL", "FAILOVER", name)
                except RedisError as exc:       # NOGOODSLAVE: its view of a replica is not fresh yet; INPROG
                    if "NOGOODSLAVE" in str(exc) or "INPROG" in str(exc):
                        return None
                    raise
            until(deadline, "Sentinel did not start the failover", ask_failover, 1)

            def switched():
                master = pairs(sentinel.call("SENTINEL", "MASTER", name))
                address = "%s:%s" % (master.get("ip"), master.get("port"))
                if address != queue["address"] and "failover_in_progress" not in master.get("flags", ""):
                    return master.get("ip"), master.get("port")
                return None
            host, port = until(deadline, "Sentinel did not name a new primary", switched, 0.5)
            # A replica of the new primary (unless a Sentinel made it one already), its clients sent
            # off to reconnect: what Sentinel sends, without its wait. The fence stays until then.
            if conn.replication().get("role") == "master":
                conn.call("MULTI")
                conn.call("REPLICAOF", host, port)
                conn.call("CLIENT", "KILL", "TYPE", "normal")
                conn.call("EXEC")
        finally:
            # The setting back, also after a failure (the primary takes writes again); a CONFIG
            # REWRITE by Sentinel meanwhile wrote the fence into the file, which is rewritten below.
            try:
                conn.call("CONFIG", "SET", "min-replicas-to-write", fence)
            except (RedisError, OSError):
                pass
        wait_replicating(queue, deadline, host)
        # The role's new file with the new primary: Sentinel's demotion, if it came first, rewrote
        # the file with the running (old) settings, the fence included. Written once the queue
        # replicates, when no demotion can still be on its way.
        rewrite_keeping_owner(queue["conf"], with_replicaof(intended, host, port))
    finally:
        conn.close()
        if sentinel is not None:
            sentinel.close()
    return True


def sentinel_login(params):
    """A connection to the Sentinel, logged in with O(password), else with a password its config
    file holds (O(fallback_conf): the one in force during a rotation's phase 1)."""
    conn = connect(params["socket"], params["timeout"])
    tried = [params["password"]]
    if params.get("fallback_conf"):
        try:
            with open(params["fallback_conf"], encoding="utf-8") as handle:
                tried += [p for p in conf_passwords(handle.read(), params["name"]) if p not in tried]
        except OSError:
            pass
    try:
        for number, password in enumerate(tried):
            try:
                conn.call("AUTH", password)
                return conn
            except RedisError as exc:
                if "WRONGPASS" not in str(exc) or number == len(tried) - 1:
                    raise
    except BaseException:
        conn.close()
        raise
    return conn


def sync_passwords(conn, params, result, check_mode):
    """O(acl_hashes), O(auth_pass), O(sentinel_pass) where the running Sentinel differs."""
    if params["acl_hashes"]:
        reply = conn.call("ACL", "GETUSER", "default")
        fields = dict(zip(reply[::2], reply[1::2])) if reply else {}
        wanted = sorted({h.lower() for h in params["acl_hashes"]})
        if sorted(set(fields.get("passwords") or [])) != wanted:
            if not check_mode:
                conn.call("ACL", "SETUSER", "default", "resetpass", *["#" + h for h in wanted])
            result["applied"]["passwords"] = dict(changed=True)
    if params["auth_pass"]:
        current = ""
        if params.get("fallback_conf"):
            try:
                with open(params["fallback_conf"], encoding="utf-8") as handle:
                    current = auth_pass_of(handle.read(), params["name"])
            except OSError:
                pass
        if current != params["auth_pass"]:
            if not check_mode:
                conn.call("SENTINEL", "SET", params["name"], "auth-pass", params["auth_pass"])
            result["applied"]["auth-pass"] = dict(changed=True)
    if params["sentinel_pass"]:
        reply = conn.call("SENTINEL", "CONFIG", "GET", "sentinel-pass")
        current = dict(zip(reply[::2], reply[1::2])).get("sentinel-pass") if reply else None
        if current != params["sentinel_pass"]:
            if not check_mode:
                conn.call("SENTINEL", "CONFIG", "SET", "sentinel-pass", params["sentinel_pass"])
            result["applied"]["sentinel-pass"] = dict(changed=True)
    if "passwords" in result["applied"] and not check_mode:
        # SENTINEL SET and CONFIG SET write the file themselves; an ACL change only with this.
        conn.call("SENTINEL", "FLUSHCONFIG")
    if any(key in result["applied"] for key in ("passwords", "auth-pass", "sentinel-pass")):
        result["changed"] = True


def write(spec):
    path = spec["path"]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".%s." % os.path.basename(path))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(spec["content"])
    os.chown(tmp, pwd.getpwnam(spec.get("owner") or "root").pw_uid, grp.getgrnam(spec.get("group") or "root").gr_gid)
    os.chmod(tmp, int(spec.get("mode") or "0640", 8))
    os.replace(tmp, path)


def main():
    module = QuietModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            socket=dict(type="path", required=True),
            password=dict(type="str", required=True, no_log=True),
            fallback_conf=dict(type="path"),
            acl_hashes=dict(type="list", elements="str", no_log=False),
            auth_pass=dict(type="str", no_log=True),
            sentinel_pass=dict(type="str", no_log=True),
            service=dict(type="str", required=True),
            conf=dict(type="dict", options=dict(path=dict(type="path", required=True),
                                                content=dict(type="str", required=True, no_log=True),
                                                owner=dict(type="str", default="root"),
                                                group=dict(type="str", default="root"),
                                                mode=dict(type="str", default="0640"))),
            settings=dict(type="dict", default={}),
            query=dict(type="bool", default=False),
            timeout=dict(type="int", default=5),
            queue=dict(type="dict", options=dict(socket=dict(type="path", required=True),
                                                 user=dict(type="str", default="admin"),
                                                 password=dict(type="str", required=True, no_log=True),
                                                 conf=dict(type="path"),
                                                 address=dict(type="str"),
                                                 replid=dict(type="str"))),
            step_down=dict(type="bool", default=False),
            wait_synced=dict(type="bool", default=False),
            wait=dict(type="int", default=120),
        ),
        required_if=[("step_down", True, ("queue",)), ("wait_synced", True, ("queue",))],
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, written=False, running=False, enabled=False, masked=False, primary="", applied={})
    if (params["step_down"] or params["wait_synced"]) and not module.check_mode:
        deadline = time.monotonic() + params["wait"]
        try:
            if params["step_down"]:
                if not (params["queue"]["conf"] and params["queue"]["address"]):
                    module.fail_json(msg="step_down needs queue.conf and queue.address", **result)
                result["stepped_down"] = result["changed"] = step_down(params, deadline)
            else:
                wait_replicating(params["queue"], deadline, or_primary=not params["queue"]["replid"])
        except (Failed, RedisError, OSError, KeyError, IndexError) as exc:
            module.fail_json(msg="%s: %s (within %d s)" % (
                "Handing the primary role to a replica" if params["step_down"] else "Waiting for the restarted replica",
                exc, params["wait"]), **result)
        module.exit_json(**result)
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
        conn = sentinel_login(params)
        try:
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
                sync_passwords(conn, params, result, module.check_mode)
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
