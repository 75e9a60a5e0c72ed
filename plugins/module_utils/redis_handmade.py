"""The package's own instance of an engine (redis-server.service, valkey-server.service)
as a hand-made setup leaves it, and the PHP-FPM pool lines that set sessions: what
the validation play reports (library/redis_host.py) and what an adoption moves
(library/redis_adopt.py). Pure functions first (unit-tested), then thin I/O.
Never returns a password: pool lines are named by their setting, not their value."""

import glob
import os
import re
import struct

from ansible_collections.redis_vps.server.plugins.module_utils.redis_resp import RedisError, RespConnection, databases, parse_info

# The article's placeholder; the validation play refuses it for every password.
PLACEHOLDER = "YourVeryStrongRedisPassword!"
POOL_GLOB = "/etc/php/*/fpm/pool.d/*.conf"
# php_value[session.save_path] = ... / php_admin_value[session.save_handler] = ...
POOL_LINE = re.compile(r"^\s*(php_value|php_admin_value)\s*\[\s*(session\.[A-Za-z0-9_.]+)\s*\]\s*=")
MARK = "; redis-vps adopt: "


def conf_args(line):
    """One config line split as Redis reads it (sdssplitargs): words, "double quoted"
    with backslash escapes (\\n, \\xHH, \\", \\\\), 'single quoted' with \\' only.
    None for an unbalanced quote (Redis refuses such a file)."""
    out, i, n = [], 0, len(line)
    escapes = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a"}
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return out
        word, quote = "", None
        if line[i] in "\"'":
            quote, i = line[i], i + 1
        while True:
            if i >= n:
                if quote:
                    return None
                break
            char = line[i]
            if quote == '"':
                if char == "\\" and i + 3 < n and line[i + 1] == "x" and re.match(r"[0-9a-fA-F]{2}", line[i + 2:i + 4]):
                    word, i = word + chr(int(line[i + 2:i + 4], 16)), i + 4
                    continue
                if char == "\\" and i + 1 < n:
                    word, i = word + escapes.get(line[i + 1], line[i + 1]), i + 2
                    continue
                if char == '"':
                    if i + 1 < n and not line[i + 1].isspace():
                        return None
                    i += 1
                    break
            elif quote == "'":
                if char == "\\" and i + 1 < n and line[i + 1] == "'":
                    word, i = word + "'", i + 2
                    continue
                if char == "'":
                    if i + 1 < n and not line[i + 1].isspace():
                        return None
                    i += 1
                    break
            elif char.isspace():
                break
            word, i = word + char, i + 1
        out.append(word)


def parse_conf(text):
    """directive (lower case) -> its last value (words joined by a space), as Redis keeps
    the last one. `include` lines are listed under 'include' (all of them)."""
    conf = {"include": []}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        args = conf_args(line)
        if not args:
            continue
        name = args[0].lower()
        if name == "include":
            conf["include"] += args[1:]
        else:
            conf[name] = " ".join(args[1:])
    return conf


def password_ok(value):
    """The validation play's rule for a password, without showing it (and what the
    controller's password file can hold: no white space at either end, no ' salt=')."""
    return (bool(value) and len(value) >= 16 and value != PLACEHOLDER and value == value.strip()
            and " salt=" not in value and re.match(r"^[\x20-\x7e]+$", value) is not None)


def keyspace(info):
    """INFO keyspace's text -> {db number: keys}, the databases that hold any."""
    return {db: keys for db, keys in databases(parse_info(info)).items() if keys}


def _rdb_length(data, pos):
    """RDB length encoding at `pos` -> (value, next position, special) where special
    means the value is an integer/LZF encoding (0xC0 form)."""
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, pos + 1, False
    if kind == 1:
        return ((first & 0x3F) << 8) | data[pos + 1], pos + 2, False
    if kind == 2:
        if first == 0x80:
            return struct.unpack(">I", data[pos + 1:pos + 5])[0], pos + 5, False
        if first == 0x81:
            return struct.unpack(">Q", data[pos + 1:pos + 9])[0], pos + 9, False
        raise ValueError("bad length byte %#x" % first)
    return first & 0x3F, pos + 1, True


def _rdb_skip_string(data, pos):
    value, pos, special = _rdb_length(data, pos)
    if not special:
        return pos + value
    if value in (0, 1, 2):            # 8, 16, 32 bit integers
        return pos + (1, 2, 4)[value]
    if value == 3:                    # LZF: compressed length, then original length
        compressed, pos, _special = _rdb_length(data, pos)
        _length, pos, _special = _rdb_length(data, pos)
        return pos + compressed
    raise ValueError("bad string encoding %d" % value)


def rdb_has_keys(data):
    """Whether an RDB file (bytes) holds any key: after the header and its AUX fields,
    an empty dataset ends (0xFF) where a dataset starts with SELECTDB (0xFE) or
    RESIZEDB (0xFB). Anything unreadable counts as holding data (never guess empty)."""
    if not data.startswith(b"REDIS") or len(data) < 10:
        return bool(data)
    pos = 9
    try:
        while pos < len(data):
            opcode = data[pos]
            if opcode == 0xFA:        # AUX key value
                pos = _rdb_skip_string(data, pos + 1)
                pos = _rdb_skip_string(data, pos)
            elif opcode == 0xFF:
                return False
            else:                     # SELECTDB, RESIZEDB, FUNCTION, MODULE_AUX, a key...
                return True
    except (IndexError, ValueError, struct.error):
        return True
    return True


def aof_dir_has_data(files):
    """appendonlydir's files (name -> bytes of the start of the file, or its size for
    incremental AOFs) -> whether any holds data: a base RDB with keys, a base AOF or an
    incremental AOF that is not empty."""
    for name, content in files.items():
        if name.endswith(".base.rdb"):
            if rdb_has_keys(content):
                return True
        elif name.endswith(".aof") and content:
            return True
    return False


def pool_session_lines(path, text):
    """The lines of a PHP-FPM pool file that set session.* (values never returned)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        match = POOL_LINE.match(line)
        if match:
            found.append({"path": path, "line": number, "directive": match.group(1), "setting": match.group(2)})
    return found


def neutralise_pool(text):
    """The pool file with its session.* lines commented out (marked, so an operator sees why)."""
    lines = text.splitlines(True)
    return "".join(MARK + line if POOL_LINE.match(line) else line for line in lines)


def holds_data(report):
    """Whether the package instance's report means the host holds something an adoption must move."""
    return bool(report.get("databases") or report.get("data_files") or report.get("pools") or report.get("error"))


# ---- I/O ---------------------------------------------------------------------------

def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def read_head(path, size=1 << 20):
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def layout(engine, conf):
    """Where the package's instance keeps things, from its parsed config."""
    data_dir = conf.get("dir") or "/var/lib/%s" % engine
    if not data_dir.startswith("/"):
        data_dir = "/var/lib/%s" % engine
    return {
        "unit": "%s-server.service" % engine,
        "conf": "/etc/%s/%s.conf" % (engine, engine),
        "dir": data_dir,
        "rdb": os.path.join(data_dir, conf.get("dbfilename") or "dump.rdb"),
        "aof_dir": os.path.join(data_dir, conf.get("appenddirname") or "appendonlydir"),
    }


def data_files(paths):
    """The package instance's data files that hold data."""
    found = []
    # The first 64 kB hold the header and AUX fields: where the keys start, if any.
    if os.path.isfile(paths["rdb"]) and rdb_has_keys(read_head(paths["rdb"], 1 << 16)):
        found.append(paths["rdb"])
    if os.path.isdir(paths["aof_dir"]):
        files = {}
        for name in os.listdir(paths["aof_dir"]):
            full = os.path.join(paths["aof_dir"], name)
            if name.endswith(".base.rdb"):
                files[name] = read_head(full, 1 << 16)
            elif name.endswith(".aof"):
                files[name] = os.path.getsize(full)
        if aof_dir_has_data(files):
            found.append(paths["aof_dir"])
    return found


def unit_state(run_command, unit):
    rc, out, _err = run_command(["systemctl", "show", "--property=ActiveState,UnitFileState", unit])
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if rc == 0 else {}
    return {"active": state.get("ActiveState") in ("active", "reloading", "activating"),
            "enabled": state.get("UnitFileState") in ("enabled", "enabled-runtime", "alias"),
            "masked": state.get("UnitFileState", "").startswith("masked")}


def connect_old(conf, timeout=5.0, raw=False):
    """A connection to the package's running instance (its unix socket if it has one,
    else 127.0.0.1:port), authenticated with its requirepass."""
    socket_path = conf.get("unixsocket")
    if socket_path and os.path.exists(socket_path):
        conn = RespConnection(socket_path, timeout, raw=raw)
    else:
        port = int(conf.get("port") or 6379)
        if port == 0:
            raise RedisError("it listens on no TCP port and no unix socket")
        conn = RespConnection(("127.0.0.1", port), timeout, raw=raw)
    if conf.get("requirepass"):
        conn.call("AUTH", conf["requirepass"])
    return conn


def inspect(engine, run_command, pool_glob=POOL_GLOB):
    """What the validation play reports of the package's instance of `engine` and of the
    PHP pools. `installed` false (no config file): nothing else is looked at. A masked
    unit is the project's own doing (an earlier run replaced it): not looked at either."""
    conf_path = "/etc/%s/%s.conf" % (engine, engine)
    pools = []
    for path in sorted(glob.glob(pool_glob)):
        pools += pool_session_lines(path, read_text(path))
    report = {"engine": engine, "installed": os.path.exists(conf_path), "active": False, "enabled": False,
              "masked": False, "databases": {}, "data_files": [], "error": "", "pools": pools,
              "requirepass_set": False, "requirepass_ok": False}
    if not report["installed"]:
        report["pending"] = holds_data(report)
        return report
    unit = "%s-server.service" % engine
    report.update(unit=unit, conf="/etc/%s/%s.conf" % (engine, engine))
    # The rerun's path: a link to /dev/null, read without systemctl (which costs 5-50 ms).
    if os.path.realpath("/etc/systemd/system/" + unit) == "/dev/null":
        report["masked"] = True
        report["pending"] = holds_data(report)
        return report
    conf = parse_conf(read_text(conf_path))
    paths = layout(engine, conf)
    report.update(unit_state(run_command, paths["unit"]))
    report["requirepass_set"] = bool(conf.get("requirepass"))
    report["requirepass_ok"] = password_ok(conf.get("requirepass", ""))
    if report["masked"]:
        report["pending"] = holds_data(report)
        return report
    if report["active"]:
        try:
            conn = connect_old(conf)
            try:
                report["databases"] = {str(db): keys for db, keys in keyspace(conn.call("INFO", "keyspace")).items()}
            finally:
                conn.close()
        except (OSError, RedisError) as error:
            report["error"] = "its keys could not be read (%s)" % str(error).split("\n", maxsplit=1)[0][:200]
    else:
        report["data_files"] = data_files(paths)
    report["pending"] = holds_data(report)
    return report


def queue_data(conf_path, data_dir):
    """The project's own queue instance on this host: whether its files hold data, and
    whether it is already replicated (its config names the replication user, which only
    hosts of redis_ha have). A single VPS joining redis_ha is the one with data and not
    replicated: it must become the group's initial primary."""
    conf = parse_conf(read_text(conf_path))
    paths = {"rdb": os.path.join(data_dir, conf.get("dbfilename") or "dump.rdb"),
             "aof_dir": os.path.join(data_dir, conf.get("appenddirname") or "appendonlydir")}
    return {"holds_data": bool(data_files(paths)), "replicated": bool(conf.get("masteruser"))}
