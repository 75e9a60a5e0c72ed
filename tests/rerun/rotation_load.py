"""Load on a host while a rotation runs (tests/rerun/test_rotation.py): copied there and
started in the background. Until STOP_FILE appears it keeps, on each of the cache and
the queue, one long-lived connection and a fresh connection per round logged in as
`default` with the passwords in PASSWORDS_FILE (root only: never on a command line),
and PHP session requests through PHP-FPM (the FastCGI client), each of which must
show its session's count one higher. Writes {rounds, errors: [...]} to RESULT_FILE.

usage: python3 rotation_load.py PASSWORDS_FILE STOP_FILE RESULT_FILE SOCKETS_JSON PHP_COMMAND
"""
import json
import os
import re
import subprocess
import sys
import time

import redis_resp     # the collection's RESP client, copied beside this program


def login(path, password):
    return redis_resp.connect(path, 5, user="default", password=password, retry=False)


def main():
    passwords_file, stop_file, result_file, sockets, php = sys.argv[1:6]
    passwords = json.load(open(passwords_file))
    sockets = json.loads(sockets)
    errors, rounds = [], 0
    held = {name: login(path, passwords[name]) for name, path in sockets.items()}
    cookie, count = "", None
    while not os.path.exists(stop_file):
        rounds += 1
        for name, path in sockets.items():
            try:
                held[name].call("INCR", "rotation:held")
            except Exception as exc:   # noqa: BLE001 (every failure is a finding)
                errors.append("%s held connection: %s" % (name, exc))
                held[name] = login(path, passwords[name])
            try:
                fresh = login(path, passwords[name])
                fresh.call("INCR", "rotation:fresh")
                fresh.close()
            except Exception as exc:   # noqa: BLE001
                errors.append("%s new connection: %s" % (name, exc))
        out = subprocess.run(php.split() + [cookie], capture_output=True, text=True).stdout
        seen = re.search(r"count=(\d+)", out)
        set_cookie = re.search(r"Set-Cookie: (PHPSESSID=[^;]+)", out)
        cookie = set_cookie.group(1) if set_cookie else cookie
        if not seen or (count is not None and int(seen.group(1)) != count + 1):
            errors.append("PHP session request: %r" % out[-300:])
        count = int(seen.group(1)) if seen else count
        time.sleep(0.05)
    json.dump({"rounds": rounds, "errors": errors, "sessions": count}, open(result_file, "w"))


if __name__ == "__main__":
    main()
