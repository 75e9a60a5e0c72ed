"""A package upgrade that replaces the server binary under running instances (issue 20): the
health report (and apt's own output) says which instances run the replaced binary and what to
do, until a rerun of site.yml restarts them. On every platform of molecule/default (its reruns): the test
reinstalls the engine's packages (apt-get install --reinstall), as unattended-upgrades would."""
import json

import pytest
from helpers import INVENTORY, INSTANCES, REPO, changed_count, playbook

pytestmark = [pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory"),
              pytest.mark.every_platform]   # issue 20: on every platform

STATUS = REPO / "playbooks" / "status.yml"


def report(tmp_path):
    path = tmp_path / "status.json"
    rc, out = playbook("-e", "redis_status_json=%s" % path, path=STATUS)
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
    return out, json.loads(path.read_text())


def test_a_reinstalled_server_package_is_reported_until_a_rerun_restarts_it(every_host, tmp_path):
    ids = {}
    for host, redis, hostvars in every_host:
        engine = hostvars.get("redis_engine", "redis")
        ids[host] = {name: redis.info(name, "server")["run_id"] for name in INSTANCES}
        apt = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall %s-server %s-tools" % (engine, engine))
        assert apt.rc == 0, apt.stdout[-2000:] + apt.stderr[-2000:]
        # apt's own output says it, from the project's DPkg::Post-Invoke hook.
        assert "runs a server binary that a package upgrade replaced" in apt.stdout + apt.stderr, apt.stderr[-2000:]
        assert {name: redis.info(name, "server")["run_id"] for name in INSTANCES} == ids[host], "restarted by the package"
    out, health = report(tmp_path)
    for host, redis, hostvars in every_host:
        by_name = {h["name"]: h for h in health[hostvars["inventory_hostname"]]}
        for name in INSTANCES:
            assert by_name[name]["binary_replaced"], (hostvars["inventory_hostname"], name)
    assert "queue runs a server binary that a package upgrade replaced" in out
    assert "cache runs a server binary that a package upgrade replaced" in out

    rc, out = playbook()
    assert rc == 0, out[-3000:]
    out, health = report(tmp_path)
    for host, redis, hostvars in every_host:
        assert not any(h["binary_replaced"] for h in health[hostvars["inventory_hostname"]])
        assert all(redis.info(name, "server")["run_id"] != ids[host][name] for name in INSTANCES)
    assert "package upgrade replaced" not in out
