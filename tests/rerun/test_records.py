"""An idempotent rerun runs no host_files module (the kernel, hardening, exporter, backup
and PHP tasks skip their module runs where the host holds what their last run put in
place: plugins/module_utils/records.py), and whatever moved since is still put back, by
those tasks only.

Counted in the run's own output (-v): each task whose module run was skipped says
`recorded: true`, except the backup's (no_log: its result is hidden; its timer, put back
below, shows that it ran when it had to), and a failure shows the read's records_moved:
what no longer held. (A count of the module's lines in the host's journal, tried first,
once found one line too many after a rerun with changed=0 on a busy machine, with
nothing to tell which run it came from: journald stamps a line when it reads it.)"""
import re
import shlex

import pytest
from helpers import INVENTORY, changed_count, playbook

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

SYSCTL = "/etc/sysctl.d/60-redis.conf"
PHP_INI = "/etc/php/*/fpm/conf.d/90-redis-sessions.ini"
TIMER = "redis-vps-backup@queue.timer"
# The kernel's, the hardening's, the exporters' and PHP's tasks (the backup's result is hidden).
SHOWN = 4


def skipped_runs(out):
    """How many host_files tasks of a run (-v) skipped their module run, on every host."""
    return len(re.findall(r'"?recorded"?: true', out))


def why(out):
    """What the validation's read said no longer held, on each host (for the failure's message)."""
    return re.findall(r'"?records_moved"?: \{[^}]*\}', out)


def exporter_of(host, instance):
    out = host.run("systemctl list-units --all --plain --no-legend --type=service %s"
                   % shlex.quote("*-exporter@%s.service" % instance)).stdout
    return out.split()[0]


def test_a_rerun_runs_no_host_files_module_and_puts_back_what_moved_with_those_tasks_only(every_host):
    hosts = len(every_host)
    rc, out = playbook("-v")
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
    assert skipped_runs(out) == SHOWN * hosts, why(out)
    moved = {}
    for host, _, _ in every_host:
        exporter = exporter_of(host, "cache")
        host.run_test("echo 'vm.overcommit_memory=0' >> %s" % SYSCTL)
        host.run_test("systemctl stop %s" % exporter)
        host.run_test("systemctl disable --now %s" % TIMER)
        host.run_test("chmod 0644 %s" % PHP_INI)
        moved[host] = exporter
    rc, out = playbook("-v")
    assert rc == 0, out[-3000:]
    # Per host: the kernel's file, the exporter started, the timer enabled and started, the ini's mode.
    assert changed_count(out) == 4 * hosts, out[-3000:]
    # Only the hardening's record still held: the other four tasks ran.
    assert skipped_runs(out) == 1 * hosts, why(out)
    for host, _, _ in every_host:
        assert "vm.overcommit_memory=0" not in host.file(SYSCTL).content_string
        assert host.service(moved[host]).is_running
        assert host.service(TIMER).is_running and host.service(TIMER).is_enabled
        assert host.run("stat -c %%a %s" % PHP_INI).stdout.strip() == "600"
    rc, out = playbook("-v")
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
    assert skipped_runs(out) == SHOWN * hosts, why(out)
