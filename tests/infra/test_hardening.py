"""Hardening: the units' sandboxing, the firewall, sshd, security updates."""
import os

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

SANDBOX = {
    "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateUsers": "yes", "PrivateDevices": "yes", "NoNewPrivileges": "yes",
    "MemoryDenyWriteExecute": "yes", "RestrictNamespaces": "yes", "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}


def hardened(hostvars, part):
    """Skip unless vps_hardening manages `part` on this host: a host whose vars turn it
    off (vps_hardening_firewall: false, ...) has it managed some other way, or not at all."""
    if str(hostvars.get("vps_hardening_" + part, True)).lower() not in ("true", "yes", "1"):
        pytest.skip("vps_hardening_%s is off for this host" % part)


@pytest.mark.parametrize("name", ["cache", "queue"])
def test_redis_units_keep_debians_sandboxing(host, instances, name):
    record = instances[name]
    want = dict(SANDBOX, User=record["user"], Group=record["group"])
    props = host.run("systemctl show %s -p %s" % (record["service"], ",".join(want))).stdout
    have = dict(line.split("=", 1) for line in props.splitlines())
    assert have == want
    pid = host.run("systemctl show -p MainPID --value %s" % record["service"]).stdout.strip()
    assert host.run("ps -o user= -p %s" % pid).stdout.strip() == record["user"]


def test_firewall_drops_inbound_but_ssh(host, hostvars):
    hardened(hostvars, "firewall")
    service = host.service("nftables")
    assert service.is_enabled
    ruleset = host.run("nft list chain inet filter input").stdout
    assert "type filter hook input priority filter; policy drop;" in ruleset
    assert "ct state established,related accept" in ruleset
    assert 'iif "lo" accept' in ruleset
    ssh_port = str(hostvars.get("vps_hardening_ssh_port", 22))
    assert "tcp dport %s ct state new accept" % ssh_port in ruleset or \
        "tcp dport { %s" % ssh_port in ruleset
    for port in ("6379", "6380"):
        assert port not in ruleset


def test_sshd_effective_settings(host, hostvars):
    hardened(hostvars, "ssh")
    effective = dict(line.split(" ", 1) for line in host.run("sshd -T").stdout.splitlines() if " " in line)
    want = {
        "passwordauthentication": "no", "kbdinteractiveauthentication": "no", "permitemptypasswords": "no",
        "permitrootlogin": "without-password", "pubkeyauthentication": "yes", "x11forwarding": "no",
        "allowagentforwarding": "no", "allowtcpforwarding": "local", "permittunnel": "no",
        "port": str(hostvars.get("vps_hardening_ssh_port", 22)),
    }
    assert {key: effective.get(key) for key in want} == want
    assert int(effective["maxauthtries"]) <= 4
    assert host.service("ssh").is_running


def test_ssh_offers_no_password_login(host, hostvars):
    """Over real SSH, as a client sees it: the server offers public keys only, even with
    cloud-init's drop-in (and, in the default scenario, the main file) saying yes."""
    hardened(hostvars, "ssh")
    if hostvars.get("ansible_connection") not in ("ssh", "paramiko"):
        pytest.skip("the host is not reached over SSH here")
    import paramiko
    transport = paramiko.Transport((hostvars.get("ansible_host", host.backend.get_hostname()),
                                    int(hostvars.get("ansible_port", 22))))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_none(hostvars.get("ansible_user", "root"))
    finally:
        transport.close()
    assert refused.value.allowed_types == ["publickey"]


def test_the_role_s_sshd_drop_in_sorts_first(host, hostvars):
    hardened(hostvars, "ssh")
    files = host.run("ls /etc/ssh/sshd_config.d").stdout.split()
    assert files[0] == "00-redis-vps-hardening.conf", files
    assert "50-redis-vps-hardening.conf" not in files
    assert not [name for name in files if "~" in name], files   # no leftover copies


def test_security_updates_run_daily(host, hostvars):
    hardened(hostvars, "unattended_upgrades")
    assert host.package("unattended-upgrades").is_installed
    config = host.run("apt-config dump APT::Periodic").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'APT::Periodic::Update-Package-Lists "1";' in config
    assert host.service("apt-daily-upgrade.timer").is_enabled


def test_redis_ports_unreachable_from_another_host(host):
    """From a second container on the same network, Redis is closed but SSH is open."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("needs a molecule scenario with a probe host")
    names = AnsibleRunner(inventory).get_hosts("probes")
    if not names:
        pytest.skip("no host in group probes")
    probes = [testinfra.get_host("docker://" + name) for name in names]   # lab containers
    address = host.run("hostname -I").stdout.split()[0]
    check = "import socket,sys; s=socket.socket(); s.settimeout(2); sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))"
    for port, reachable in ((22, True), (6379, False), (6380, False), (9121, False), (9122, False)):
        result = probes[0].run("python3 -c \"%s\" %s %d" % (check, address, port))
        assert (result.rc == 0) is reachable, (port, result.rc)
