"""Read-only report of this host's Redis endpoints (the redis_endpoint role's HAProxy):
for each frontend of /etc/haproxy/haproxy.cfg, whether a RESP PING through
127.0.0.1:PORT answers (+PONG, or -NOAUTH without a password: the server is there), its
round trip in ms, and which server HAProxy sends it to (its stats socket: the servers
UP). Prints one JSON object; sends no password anywhere."""
import json
import socket
import time

CFG = "/etc/haproxy/haproxy.cfg"
STATS = "/run/haproxy/admin.sock"


def frontends(text):
    """frontend name -> (port, backend name)."""
    out, name = {}, None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] in ("frontend", "backend", "global", "defaults", "listen"):
            name = words[1] if words[0] == "frontend" and len(words) > 1 else None
            if name:
                out[name] = [None, None]
        elif name and words[0] == "bind" and len(words) > 1:
            out[name][0] = int(words[1].rsplit(":", 1)[1])
        elif name and words[0] == "default_backend" and len(words) > 1:
            out[name][1] = words[1]
    return out


def servers():
    """backend -> [{name, address, status}] from HAProxy's `show stat` (empty if no socket)."""
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(2)
        sock.connect(STATS)
        sock.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        return {}
    lines = data.decode(errors="replace").splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        out.setdefault(row["pxname"], []).append(
            {"name": row["svname"], "address": row.get("addr", ""), "status": row.get("status", "")})
    return out


def ping(port):
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            conn.settimeout(3)
            conn.sendall(b"PING\r\n")
            reply = conn.recv(200)
    except OSError as exc:
        return False, None, "%s" % exc
    rtt = round((time.monotonic() - start) * 1000, 2)
    ok = reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
    return ok, rtt, "" if ok else "no RESP answer (%r)" % reply[:40]


def main():
    try:
        with open(CFG, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        print(json.dumps({"error": "no endpoint config: %s" % exc}))
        return
    stats = servers()
    out = []
    for name, (port, backend) in sorted(frontends(text).items(), key=lambda kv: kv[1][0] or 0):
        up, rtt, error = ping(port) if port else (False, None, "no bind line")
        behind = [s for s in stats.get(backend, []) if s["status"].startswith("UP")]
        out.append({"name": name, "port": port, "reachable": up, "rtt_ms": rtt, "error": error,
                    "servers": stats.get(backend, []), "behind": behind})
    print(json.dumps({"endpoints": out}))


if __name__ == "__main__":
    main()
