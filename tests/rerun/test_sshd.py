"""sshd: what overrides the hardening stops the run with the old config kept and sshd
not reloaded (tests/infra proves the cloud-init case over real SSH)."""
import pytest
from helpers import INVENTORY, changed_count, playbook

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")

DROP_IN = "/etc/ssh/sshd_config.d/00-redis-vps-hardening.conf"


def test_a_line_above_the_include_stops_the_run_and_keeps_sshd_as_it_was(every_host):
    before = {}
    for host, _, _ in every_host:
        # sshd keeps the first value it reads: a line above Debian's Include beats every drop-in.
        host.run_test("sed -i '1i PasswordAuthentication yes' /etc/ssh/sshd_config")
        before[host] = (host.run("sha256sum %s" % DROP_IN).stdout, host.run("systemctl show -p MainPID ssh").stdout)
    try:
        rc, out = playbook()
        assert rc != 0, out[-2000:]
        # Once per host: in the per-host YAML result the quote is doubled (role''s), in Ansible's [ERROR] line not.
        said = "overrides the role's settings, so sshd would keep PasswordAuthentication yes"
        assert out.count(said) + out.count(said.replace("'", "''")) >= len(every_host), out[-3000:]
        for host, _, _ in every_host:
            assert (host.run("sha256sum %s" % DROP_IN).stdout, host.run("systemctl show -p MainPID ssh").stdout) == before[host]
            assert host.service("ssh").is_running
        # And again: the failed run's record of sshd -T's output is gone, so the next run checks
        # again instead of skipping the hardening's module run as if nothing had moved.
        rc, out = playbook()
        assert rc != 0 and said in out.replace("''", "'"), out[-3000:]
    finally:
        for host, _, _ in every_host:
            host.run_test("sed -i '1{/^PasswordAuthentication yes$/d}' /etc/ssh/sshd_config")
    rc, out = playbook()
    assert rc == 0 and changed_count(out) == 0, out[-3000:]
    for host, _, _ in every_host:
        assert host.run("sshd -T | grep -i '^passwordauthentication '").stdout.strip() == "passwordauthentication no"


def test_an_edited_drop_in_is_put_back_and_checked(every_host):
    for host, _, _ in every_host:
        host.run_test("sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' %s" % DROP_IN)
    rc, out = playbook()
    assert rc == 0, out[-3000:]
    for host, _, _ in every_host:
        assert host.run("sshd -T | grep -i '^passwordauthentication '").stdout.strip() == "passwordauthentication no"
        assert not host.run("ls /etc/ssh/sshd_config.d | grep '~'").stdout
