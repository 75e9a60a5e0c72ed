#!/usr/bin/python
"""Apply a Redis instance's intended settings to the running server.

Why not community.general.redis: it sets one parameter per call over TCP only
(one round trip and one module run per setting), and converts sizes such as
256m with binary units while Redis reads 256m as 256,000,000 bytes. This module
reads CONFIG GET * once over the unix socket, changes only what differs, in a
safe order, and says which differences need a restart instead.
"""

DOCUMENTATION = r"""
module: redis_live_config
short_description: Compare a running Redis with its intended settings and CONFIG SET what can change live
description:
  - Connects over the instance's unix socket, authenticates as O(user), reads C(CONFIG GET *).
  - Settings listed in O(live) that differ are applied with C(CONFIG SET), C(maxmemory-policy) first.
  - Other differing settings are returned in RV(restart_required); this module never restarts anything.
  - If O(user) cannot authenticate (the users file changed and is not loaded yet), RV(restart_required) is C([auth]).
options:
  socket: {description: Path of the instance's unix socket., type: path, required: true}
  user: {description: ACL user to authenticate as., type: str, default: admin}
  password: {description: Password of O(user)., type: str, required: true, no_log: true}
  config: {description: "Intended settings, Redis names to values in CONFIG GET form (sizes in bytes).", type: dict, required: true}
  live: {description: Names of the settings that may be changed at runtime., type: list, elements: str, default: []}
  acl_load: {description: Reload the users from the instance's aclfile with ACL LOAD (atomic; a bad file changes nothing)., type: bool, default: false}
  app_password:
    description: Password the C(default) user should have; if the running server refuses it, the users are reloaded too.
    type: str
  timeout: {description: Seconds to wait for the socket to accept connections., type: int, default: 10}
author: redis-vps developers
"""

RETURN = r"""
applied: {description: "Settings changed live: name -> {before, after}.", type: dict, returned: always}
restart_required: {description: Differing settings that only a restart applies., type: list, returned: always}
run_id: {description: The server's run_id (changes on every restart)., type: str, returned: success}
running: {description: Running value of every intended setting., type: dict, returned: success}
"""

import socket
import time

from ansible.module_utils.basic import AnsibleModule

# Applied before any other live change: shrinking maxmemory under noeviction
# would make writes fail at once, so the policy moves first.
FIRST = ("maxmemory-policy",)


class RedisError(Exception):
    """An error reply from the server."""


class RespConnection:
    """Just enough RESP2 to send commands and read replies."""

    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")

    def close(self):
        self.reader.close()
        self.sock.close()

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _reply(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2].decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise RedisError("unexpected reply %r" % line)


def connect(path, timeout):
    """Connect, retrying while the socket is not there yet (instance starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return RespConnection(path, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


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


def info_field(info, field):
    for line in info.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", required=True),
            user=dict(type="str", default="admin"),
            password=dict(type="str", required=True, no_log=True),
            config=dict(type="dict", required=True),
            live=dict(type="list", elements="str", default=[]),
            acl_load=dict(type="bool", default=False),
            app_password=dict(type="str", no_log=True),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, applied={}, restart_required=[])
    try:
        conn = connect(params["socket"], params["timeout"])
    except OSError as exc:
        module.fail_json(msg="cannot connect to %s: %s" % (params["socket"], exc), **result)
    try:
        try:
            conn.call("AUTH", params["user"], params["password"])
        except RedisError as exc:
            if "WRONGPASS" not in str(exc):
                raise
            result["restart_required"] = ["auth"]
            module.exit_json(**result)
        if params["app_password"] and not authenticates(params, "default", params["app_password"]):
            params["acl_load"] = True   # the running users differ from the file
        if params["acl_load"]:
            if not module.check_mode:
                conn.call("ACL", "LOAD")
                # Redis drops the connections of reloaded users, ours included.
                conn.close()
                conn = connect(params["socket"], params["timeout"])
                conn.call("AUTH", params["user"], params["password"])
            result["changed"] = True
        flat = conn.call("CONFIG", "GET", "*")
        running = dict(zip(flat[::2], flat[1::2]))
        changes, restart = plan_changes(running, params["config"], set(params["live"]))
        for name, before, after in changes:
            if not module.check_mode:
                conn.call("CONFIG", "SET", name, after)
            result["applied"][name] = dict(before=before, after=after)
        result["restart_required"] = restart
        result["changed"] = result["changed"] or bool(changes)
        result["run_id"] = info_field(conn.call("INFO", "server"), "run_id")
        result["running"] = {name: running.get(name) for name in params["config"]}
        if changes:
            result["diff"] = dict(
                before="".join("%s %s\n" % (n, b) for n, b, _ in changes),
                after="".join("%s %s\n" % (n, a) for n, _, a in changes),
            )
    except (RedisError, OSError) as exc:
        module.fail_json(msg="Redis at %s: %s" % (params["socket"], exc), **result)
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
