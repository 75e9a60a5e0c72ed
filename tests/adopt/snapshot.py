"""Every key of a Redis/Valkey instance, as JSON on stdout: run_id, and per database
each key's type and PTTL; for streams their groups with pending counts. Stdlib and the
collection's RESP client (plugins/module_utils/redis_resp.py) only: both copied to the host by
molecule/adopt/prepare.yml.

usage: REDIS_PW=... python3 snapshot.py (SOCKET | HOST:PORT) [USER]
The password comes from the environment, never the command line (ps)."""
import json
import os
import sys

import redis_resp     # the collection's RESP client, copied beside this program


def main():
    target = sys.argv[1]
    if not target.startswith("/"):
        host, port = target.rsplit(":", 1)
        target = (host, int(port))
    conn = redis_resp.connect(target, 60, user=(sys.argv[2:3] or [None])[0],
                              password=os.environ.get("REDIS_PW") or None, retry=False)
    call = conn.call
    run_id = conn.info("server")["run_id"]
    dbs = {}
    for db in sorted(redis_resp.databases(conn.info("keyspace"))):
        call("SELECT", db)
        keys, cursor = {}, "0"
        while True:
            cursor, batch = call("SCAN", cursor, "COUNT", 1000)
            for key in batch:
                kind = call("TYPE", key)
                entry = {"type": kind, "pttl": call("PTTL", key)}
                if kind == "stream":
                    entry["groups"] = {g[1]: {"pending": g[5], "consumers": g[3]}
                                       for g in call("XINFO", "GROUPS", key)}
                    entry["length"] = call("XLEN", key)
                elif kind == "list":
                    entry["length"] = call("LLEN", key)
                keys[key] = entry
            if cursor == "0":
                break
        dbs[str(db)] = keys
    json.dump({"run_id": run_id, "databases": dbs}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
