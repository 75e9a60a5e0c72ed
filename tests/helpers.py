"""Fixtures and helpers shared by the testinfra suites (tests/infra, tests/rerun).

Run by molecule's verifier, or by hand against any inventory:
    pytest tests/infra --hosts='ansible://redis_servers' --ansible-inventory=inventory/prod
Tests that disturb a host (memory pressure, kill -9, restarts) run only where
REDIS_VPS_DESTRUCTIVE=1 (molecule sets it; never set it for a production host).
"""
import base64
import contextlib
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# The collection's own size, plan and layout rules, imported as Ansible names them
# (collections/ links this repository in as ansible_collections.redis_vps.server).
sys.path.insert(0, str(REPO / "collections"))
from ansible_collections.redis_vps.server.plugins.filter import redis_plan  # noqa: E402
from ansible_collections.redis_vps.server.plugins.module_utils import redis_resp  # noqa: E402

INSTANCES = ("cache", "queue")
DESTRUCTIVE = os.environ.get("REDIS_VPS_DESTRUCTIVE") == "1"

destructive = pytest.mark.skipif(not DESTRUCTIVE, reason="disturbs the host; set REDIS_VPS_DESTRUCTIVE=1 on a test host")


class RedisCommandError(AssertionError):
    """A redis-cli call failed; the message never contains a password."""


@pytest.fixture(scope="module")
def hostvars(host):
    return host.ansible.get_variables()


def engine_of(hostvars):
    """The host's engine layout (redis or valkey): packages, user, CLI, folders."""
    return redis_plan.redis_engine_layout(hostvars.get("redis_engine", "redis"))


def instances_of(hostvars):
    """name -> the instance's record as the role lays it out for the host's engine:
    service, conf, users_conf, user, cli, config (unixsocket, logfile, dir, ...), and
    its exporter (roles/redis_exporter: service, port, env_file, ...) unless redis_exporter is off, and for the
    queue (persistent) its backups (dir, status_file, service, timer, ...)."""
    own = {"cache": {"maxmemory": "0", "appendonly": "no", "save": ""},
           "queue": {"maxmemory": "0", "appendonly": "yes", "save": "3600 1"}}
    ports = hostvars.get("redis_exporter_ports", {"cache": 9121, "queue": 9122}) if hostvars.get("redis_exporter", True) else {}
    engine = engine_of(hostvars)["engine"]
    exporters = redis_plan.redis_exporter_records(ports, engine)
    return {r["name"]: dict(r, **({"exporter": exporters[r["name"]]} if r["name"] in exporters else {}))
            for r in redis_plan.redis_instance_records(own, {}, engine)}


def credentials_of(hostvars, inventory=None):
    """Passwords as the controller knows them: given in the inventory, else generated files,
    in redis_credentials_dir or where the role puts them by default: .secrets/ next to the
    inventory (roles from the installed collection) or at the top of this repository."""
    if hostvars.get("redis_credentials_dir"):
        folders = [pathlib.Path(hostvars["redis_credentials_dir"])]
    else:
        inventory = pathlib.Path(inventory).resolve() if inventory else None
        folders = ([(inventory if inventory.is_dir() else inventory.parent) / ".secrets"] if inventory else []) + [REPO / ".secrets"]
    folder = next((f for f in folders if (f / hostvars["inventory_hostname"]).is_dir()), folders[-1])
    own = folder / hostvars["inventory_hostname"]
    # The hosts of redis_ha share the replicated queue's users: one folder for the group.
    shared = folder / "redis_ha" if "redis_ha" in hostvars.get("group_names", []) else own
    out = {}
    for name in INSTANCES + ("admin", "monitor", "backup"):
        given = hostvars.get("redis_%s_password" % name)
        path = (own if name == "cache" else shared) / ("redis_%s_password" % name)
        if given or name != "backup" or path.exists():    # backup: only on hosts the backup role has seen
            out[name] = given or path.read_text().strip()
    # PHP sessions' own user (issue 17), on every host of this release.
    if (shared / "session_password").exists():
        out["session"] = (shared / "session_password").read_text().strip()
    for name in ("replica", "sentinel", "haproxy"):
        if (shared / ("%s_password" % name)).exists() and shared != own:
            out[name] = (shared / ("%s_password" % name)).read_text().strip()
    return out


@pytest.fixture(scope="module")
def engine(hostvars):
    return engine_of(hostvars)


@pytest.fixture(scope="module")
def instances(hostvars):
    return instances_of(hostvars)


@pytest.fixture(scope="module")
def credentials(host, hostvars):
    return credentials_of(hostvars, getattr(host.backend, "ansible_inventory", None))


class Redis:
    """The engine's CLI (redis-cli, valkey-cli) on the host, over an instance's unix socket.

    The password travels in REDISCLI_AUTH (never -a; valkey-cli reads it too); errors
    are re-raised without the command line so that no password reaches a test report.
    """

    def __init__(self, host, credentials, instances):
        self.host = host
        self.credentials = credentials
        self.instances = instances

    def socket(self, instance):
        return self.instances[instance]["config"]["unixsocket"]

    def cli(self, instance, user, password):
        """The CLI command line (without arguments) for `user` on `instance`."""
        return "REDISCLI_AUTH=%s %s --no-auth-warning -s %s --user %s" % (
            shlex.quote(password), self.instances[instance]["cli"], self.socket(instance), shlex.quote(user))

    def run(self, instance, *args, user="admin", password=None, check=True):
        if password is None:
            password = self.credentials["admin" if user == "admin" else instance]
        cmd = "%s %s" % (self.cli(instance, user, password), " ".join(shlex.quote(str(a)) for a in args))
        result = self.host.run(cmd)
        if check and (result.rc != 0 or result.stdout.startswith(("ERR", "NOAUTH", "WRONGPASS", "NOPERM"))):
            raise RedisCommandError("%s %s on %s failed (rc %s): %s" % (
                self.instances[instance]["cli"], " ".join(map(str, args[:2])), instance, result.rc, result.stderr.replace(password, "***")))
        return (result.stdout + result.stderr).strip()

    def config(self, instance, name):
        reply = self.run(instance, "CONFIG", "GET", name).split("\n")
        return reply[1] if len(reply) > 1 else ""   # an empty value (save "") is stripped away

    def configs(self, instance, names):
        """CONFIG GET of several settings in one round trip (Redis 7 and Valkey take several): {name: value}."""
        lines = self.run(instance, "CONFIG", "GET", *names).split("\n")
        found = dict(zip(lines[0::2], lines[1::2]))   # a last empty value was stripped away
        return {name: found.get(name, "") for name in names}

    def info(self, instance, section):
        return redis_resp.parse_info(self.run(instance, "INFO", section))


@pytest.fixture(scope="module")
def redis(host, credentials, instances):
    return Redis(host, credentials, instances)


@pytest.fixture(scope="module")
def expected_maxmemory(hostvars, host):
    """maxmemory of each instance in bytes, by the role's own rules."""
    ram = hostvars.get("redis_host_memory_mb")
    if ram is None:
        ram = int(host.run("awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo").stdout)
    plan = redis_plan.redis_memory_plan(ram)
    return {name: redis_plan.redis_bytes(hostvars.get("redis_%s_maxmemory" % name) or plan[name])
            for name in INSTANCES}


def fill(host, redis, instance, prefix, count, size):
    """SET `count` values of `size` bytes as the application user, pipelined; redis-cli's report.
    It returns once the server has freed redis-cli's client too (at most 10 s): redis-cli --pipe
    exits before that, and the client's query buffer and queued replies count in used_memory
    until then (settled_used_memory: the same wait, for readings)."""
    clients = int(redis.info(instance, "clients")["connected_clients"])
    generator = (
        "import sys\n"
        "v = 'x' * %d\n"
        "for i in range(%d):\n"
        "    k = '%s:%%d' %% i\n"
        "    sys.stdout.write('*3\\r\\n$3\\r\\nSET\\r\\n$%%d\\r\\n%%s\\r\\n$%%d\\r\\n%%s\\r\\n'"
        " %% (len(k), k, len(v), v))\n" % (size, count, prefix))
    out = host.run("python3 -c %s | %s --pipe" % (
        shlex.quote(generator), redis.cli(instance, "default", redis.credentials[instance])))
    deadline = time.monotonic() + 10
    while int(redis.info(instance, "clients")["connected_clients"]) > clients and time.monotonic() < deadline:
        time.sleep(0.1)
    return out.stdout + out.stderr


def settled_used_memory(redis, instance, timeout=10):
    """used_memory once the last fill's client is gone: redis-cli --pipe exits before the server
    has freed its client, whose query buffer and queued replies count in used_memory meanwhile
    (a ratio worked out from the first read came out 0.50 instead of 0.85). Two reads 0.2 s apart
    within 64 KB of each other."""
    last = int(redis.info(instance, "memory")["used_memory"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = int(redis.info(instance, "memory")["used_memory"])
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def put_file(host, path, text, mode="0644"):
    """Write `text` to `path` on the host (base64 through the shell: any content, no quoting trouble)."""
    host.run_test("mkdir -p %s && echo %s | base64 -d > %s && chmod %s %s" % (
        shlex.quote(os.path.dirname(path)), base64.b64encode(text.encode()).decode(),
        shlex.quote(path), mode, shlex.quote(path)))


def put_program(host, path, source):
    """Install a test's client program (`source`, a file of this repository) at `path` on the host, with
    the collection's RESP client (plugins/module_utils/redis_resp.py) beside it, which it imports."""
    put_file(host, os.path.join(os.path.dirname(path), "redis_resp.py"),
             (REPO / "plugins" / "module_utils" / "redis_resp.py").read_text())
    put_file(host, path, pathlib.Path(source).read_text())


RESP_CLIENT = "/usr/local/lib/redis-vps-resp-client.py"


class RespHost:
    """A host whose apps the tests play (an app host, a host of redis_ha): tests/apps/resp_client.py
    on it, with the collection's RESP client, talks to 127.0.0.1 as an application would."""

    def __init__(self, host):
        self.host = host
        self.vars = host.ansible.get_variables()
        self.name = self.vars["inventory_hostname"]
        self.address = self.vars.get("redis_private_address")
        put_program(host, RESP_CLIENT, REPO / "tests" / "apps" / "resp_client.py")

    def resp(self, port, commands, password=None, check=True):
        """The replies to `commands` (a list of argument lists) on 127.0.0.1:port of this host."""
        env = "REDIS_PASSWORD=%s " % shlex.quote(password) if password else ""
        out = self.host.run("%spython3 %s %d %s" % (env, RESP_CLIENT, port, shlex.quote(json.dumps(commands))))
        if check:
            assert out.rc == 0, "RESP client on %s port %d failed: %s" % (self.name, port, out.stderr[-300:])
        return json.loads(out.stdout) if out.rc == 0 else None


FCGI_CLIENT = "/usr/local/lib/fcgi_request.py"


def php_request_command(host, script_path, script_text):
    """Install tests/fcgi_request.py and a PHP script on the host; the command that requests
    the script from the distribution's PHP-FPM (add a cookie, and a count, as arguments)."""
    put_file(host, FCGI_CLIENT, (REPO / "tests" / "fcgi_request.py").read_text())
    put_file(host, script_path, script_text)
    version = host.run("phpquery -V | sort -V | tail -1").stdout.strip()
    return "python3 %s /run/php/php%s-fpm.sock %s" % (FCGI_CLIENT, version, script_path)


SESSION_PHP = "<?php session_start(); $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1; echo 'count=', $_SESSION['n'];"


def session_command(host, folder):
    """Install a PHP session counter under `folder` on the host; the FastCGI command for it."""
    return php_request_command(host, "%s/session.php" % folder, SESSION_PHP)


def php_session(host, folder, cookie=""):
    """One request to the session counter: (the session cookie, the count it shows)."""
    out = host.run("%s %s" % (session_command(host, folder), shlex.quote(cookie))).stdout
    count = int(re.search(r"count=(\d+)", out).group(1))
    set_cookie = re.search(r"Set-Cookie: (PHPSESSID=[^;]+)", out)
    return (set_cookie.group(1) if set_cookie else cookie), count


# Molecule's inventory, when a scenario runs the tests (reruns of playbooks need it).
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE")
# How long one playbook run of a test may take (s): longer on a loaded machine (an HA rolling
# rerun took over 600 s at a load of 40 on 2 cores).
PLAYBOOK_TIMEOUT = int(os.environ.get("REDIS_VPS_PLAYBOOK_TIMEOUT", "600"))
# The hosts a playbook() run covers when it is given no limit of its own (None: every host of
# the scenario); limited_to() narrows it for a test that need not run on every platform.
RUN_LIMIT = None
# The platforms such a test runs on: Debian 12 with Redis 7.0 and Debian 13 with Valkey 8.1 (both
# releases, both engines; Debian 13 with Redis 8.0 is in every other scenario): tests/rerun's,
# but issue 20's faults and the health report. A third fewer hosts in each of their runs of
# site.yml. REDIS_VPS_RERUN_PLATFORMS=all runs them on every host.
RERUN_PLATFORMS = os.environ.get("REDIS_VPS_RERUN_PLATFORMS", "d12-redis d13-valkey").split()


def narrowed(names):
    """Of the scenario's host names, those of RERUN_PLATFORMS (all of them for `all`)."""
    chosen = [name for name in names if RERUN_PLATFORMS == ["all"] or any(name.endswith(p) for p in RERUN_PLATFORMS)]
    assert chosen, "no host of %s among %s" % (RERUN_PLATFORMS, names)
    return chosen


@contextlib.contextmanager
def limited_to(names):
    """playbook() runs without a limit of their own cover `names` only, meanwhile."""
    global RUN_LIMIT
    RUN_LIMIT = ",".join(names)
    try:
        yield
    finally:
        RUN_LIMIT = None


# Each playbook() run's wall time, one JSON line per run appended here when set (tools/test
# sets it: CI's log says where a scenario's verify time goes).
PLAYBOOK_LOG = os.environ.get("REDIS_VPS_PLAYBOOK_LOG")


def playbook(*args, extra_vars=None, tmp_path=None, path=REPO / "site.yml", limit=None, env=None):
    """Run site.yml (or `path`) on `limit` (default: RUN_LIMIT, else every host); return (rc,
    output with runs of white space folded to one space)."""
    limit = limit or RUN_LIMIT
    cmd = ["ansible-playbook", "-i", INVENTORY, str(path), *args] + (["--limit", limit] if limit else [])
    if extra_vars is not None:
        path = tmp_path / "vars.json"
        path.write_text(json.dumps(extra_vars))
        cmd += ["-e", "@%s" % path]
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", **(env or {}))
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT)
    if PLAYBOOK_LOG:
        with open(PLAYBOOK_LOG, "a") as log:
            log.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
                                  "playbook": pathlib.Path(cmd[3]).name,
                                  "limit": limit or "all", "rc": done.returncode,
                                  "seconds": round(time.monotonic() - started, 1)}) + "\n")
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def changed_count(output):
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1]))


@pytest.fixture
def play(host):
    """Run a playbook on the host under test only (the others are tested on their own)."""
    name = host.backend.get_hostname()
    return lambda *args, **kwargs: playbook(*args, limit=name, **kwargs)


@pytest.fixture(scope="session")
def scenario_hosts():
    """(testinfra host, Redis, hostvars) of every host of the molecule scenario: reruns
    converge them side by side, a refused run is refused everywhere and must change
    nothing anywhere. (tests/rerun/conftest.py's every_host gives a test these, or two of them.)"""
    import testinfra
    out = []
    for host in testinfra.get_hosts(["ansible://redis_servers"], ansible_inventory=INVENTORY):
        hostvars = host.ansible.get_variables()
        out.append((host, Redis(host, credentials_of(hostvars), instances_of(hostvars)), hostvars))
    return out
