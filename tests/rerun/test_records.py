"""An idempotent rerun runs no host_files module (the kernel, hardening, exporter, backup
and PHP tasks skip their module runs where the host holds what their last run put in
place: plugins/module_utils/records.py), and whatever moved since is still put back, by
those tasks only. Counted in each host's journal, where every module run logs a line (but
the backup's: its task is no_log, and a no_log module run logs nothing; its timer, put
back below, shows that it ran)."""
import shlex

import pytest
from helpers import INVENTORY, changed_count, playbook

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

HOST_FILES = "ansible-redis_vps.server.host_files"
SYSCTL = "/etc/sysctl.d/60-redis.conf"
PHP_INI = "/etc/php/*/fpm/conf.d/90-redis-sessions.ini"
TIMER = "redis-vps-backup@queue.timer"


def host_files_runs(host, since):
    """How many host_files module runs the host's journal logged since `since` (its clock)."""
    out = host.run("journalctl -q -o cat -t %s --since @%s" % (HOST_FILES, since)).stdout
    return out.count("Invoked with")


def now(host):
    return host.run("date +%s").stdout.strip()


def exporter_of(host, instance):
    out = host.run("systemctl list-units --all --plain --no-legend --type=service %s"
                   % shlex.quote("*-exporter@%s.service" % instance)).stdout
    return out.split()[0]


def test_a_rerun_runs_no_host_files_module_and_puts_back_what_moved_with_those_tasks_only(every_host):
    since = {host: now(host) for host, _, _ in every_host}
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
    for host, _, _ in every_host:
        assert host_files_runs(host, since[host]) == 0, "an idempotent rerun ran host_files"
    moved = {}
    for host, _, _ in every_host:
        exporter = exporter_of(host, "cache")
        host.run_test("echo 'vm.overcommit_memory=0' >> %s" % SYSCTL)
        host.run_test("systemctl stop %s" % exporter)
        host.run_test("systemctl disable --now %s" % TIMER)
        host.run_test("chmod 0644 %s" % PHP_INI)
        moved[host] = exporter
        since[host] = now(host)
    rc, out = playbook()
    assert rc == 0, out[-3000:]
    # Per host: the kernel's file, the exporter started, the timer enabled and started, the ini's mode.
    assert changed_count(out) == 4 * len(every_host), out[-3000:]
    for host, _, _ in every_host:
        assert "vm.overcommit_memory=0" not in host.file(SYSCTL).content_string
        assert host.service(moved[host]).is_running
        assert host.service(TIMER).is_running and host.service(TIMER).is_enabled
        assert host.run("stat -c %%a %s" % PHP_INI).stdout.strip() == "600"
        # The kernel's, the exporter's and PHP's runs (and the backup's, which logs nothing): the
        # tasks whose records no longer held; the hardening's did not run.
        assert host_files_runs(host, since[host]) == 3
        since[host] = now(host)
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
    for host, _, _ in every_host:
        assert host_files_runs(host, since[host]) == 0
