"""Memory on a small VPS under a hostile or broken client (issue 20), on every platform of
molecule/default (its reruns): one client cannot grow its buffers to the host's RAM (600 MB sent to the
cache in one unfinished request is cut off early), and the kernel's OOM killer takes the cache
before the queue. (The 1 GB VM test, a flood while a writer fills the queue, is tests/vm's.)"""
import json
import pathlib

import pytest
from helpers import INVENTORY, INSTANCES, put_file, put_program

pytestmark = [pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory"),
              pytest.mark.every_platform]   # issue 20: on every platform

FLOOD = "/usr/local/lib/redis-vps-flood.py"
MB = 1024 * 1024


@pytest.mark.parametrize("shape, total", [("bulk", 500 * 1000 * 1000), ("many", 600 * 1000 * 1000)],
                         ids=["one-500MB-value", "600MB-of-arguments"])
def test_a_huge_unfinished_request_to_the_cache_is_cut_off_and_the_cache_stays(every_host, shape, total):
    for host, redis, _ in every_host:
        put_program(host, FLOOD, pathlib.Path(__file__).parent / "flood.py")
        put_file(host, "/root/.flood_pw", redis.credentials["cache"] + "\n", mode="0600")
        run = host.run("timeout 300 python3 %s %d %s %d < /root/.flood_pw; rm -f /root/.flood_pw"
                       % (FLOOD, int(redis.instances["cache"]["config"].get("port", 6379)), shape, total))
        assert run.rc == 0, run.stdout + run.stderr
        said = json.loads(run.stdout)
        assert said["cut"] and said["sent_mb"] < 100, (host.backend.get_hostname(), said)
        assert redis.run("cache", "PING") == "PONG"
        memory = redis.info("cache", "memory")
        assert int(memory["used_memory"]) < 64 * MB, memory["used_memory_human"]


def test_client_buffers_are_bounded_on_both_instances(every_host):
    for _, redis, _ in every_host:
        for name in INSTANCES:
            assert redis.config(name, "client-query-buffer-limit") == str(32 * MB)
            assert redis.config(name, "maxmemory-clients") == str(32 * MB)


def test_the_oom_killer_takes_the_cache_before_the_queue(every_host):
    for host, redis, _ in every_host:
        adj = {}
        for name in INSTANCES:
            pid = host.run("systemctl show -p MainPID --value %s" % redis.instances[name]["service"]).stdout.strip()
            adj[name] = int(host.file("/proc/%s/oom_score_adj" % pid).content_string)
            assert redis.config(name, "oom-score-adj") == "yes"      # relative
        # A container cannot lower a score below its own (the queue stays 0 there; -500 on a VPS).
        assert adj["cache"] == 500 and adj["queue"] in (-500, 0), adj
        show = host.run("systemctl show -p OOMScoreAdjust %s" % redis.instances["queue"]["service"]).stdout
        assert "OOMScoreAdjust=-500" in show, show
