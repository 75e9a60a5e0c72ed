"""The exporter is no password phishing tool (issue 20): asked by anyone who reaches it to scrape
an address of their choosing (/scrape?target=), it connects there without the monitor password;
its own instance it still scrapes, logged in as monitor, without CONFIG GET. On every platform of
molecule/default, whose hosts the reruns share (exporter 1.45 on Debian 12, 1.69 on Debian 13)."""
import pytest
from helpers import INVENTORY, INSTANCES, put_file

pytestmark = [pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory"),
              pytest.mark.every_platform]   # issue 20: on every platform

LISTENER = """
import socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(8)
server.settimeout(6)
got = b""
try:
    while True:
        conn, _ = server.accept()
        conn.settimeout(2)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                got += data
                conn.sendall(b"-ERR not a redis\\r\\n")
        except OSError:
            pass
        conn.close()
except OSError:
    pass
open(out, "wb").write(got)
"""
FETCH = "python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())' %s"


@pytest.mark.parametrize("name", INSTANCES)
def test_an_exporter_asked_to_scrape_a_listener_of_ours_sends_it_no_password(every_host, name):
    for host, redis, _ in every_host:
        exporter = redis.instances[name]["exporter"]
        put_file(host, "/usr/local/lib/phish_listener.py", LISTENER)
        # Its output away from the command's: over SSH, the command would wait for the listener's end.
        host.run_test("rm -f /root/phished.bin; (python3 /usr/local/lib/phish_listener.py 7799 /root/phished.bin"
                      " </dev/null >/dev/null 2>&1 &) ; sleep 0.5")
        scraped = host.run(FETCH % ("'http://127.0.0.1:%d/scrape?target=redis://127.0.0.1:7799'" % exporter["port"]))
        assert "redis_up 0" in scraped.stdout, scraped.stdout[-500:] + scraped.stderr
        host.run_test("for i in $(seq 1 40); do [ -f /root/phished.bin ] && break; sleep 0.25; done; [ -f /root/phished.bin ]")
        got = host.file("/root/phished.bin").content
        assert got, "the exporter did not connect to the listener: the test proves nothing"
        assert redis.credentials["monitor"].encode() not in got
        assert b"AUTH" not in got.upper(), got[:300]
        # Its own instance it still scrapes, as monitor, with every figure the alert rules use.
        own = host.run(FETCH % ("http://127.0.0.1:%d/metrics" % exporter["port"])).stdout
        for line in ("redis_up 1", "redis_memory_max_bytes", "redis_connected_clients", "redis_evicted_keys_total"):
            assert line in own, (host.backend.get_hostname(), name, line)
        log = host.run("journalctl -q --no-pager -u %s" % exporter["service"]).stdout
        assert redis.credentials["monitor"] not in log
