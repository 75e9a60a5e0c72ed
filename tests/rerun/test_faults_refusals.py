"""Refusals for faults (issue 20), in the pattern of test_rerun.py's: a value that would break
a firewall fragment or a config file is refused in the validation play, naming the variable,
and nothing changes on any host. And a fragment that nft itself refuses is never written.
"""
import json

import pytest
from helpers import INVENTORY, REPO, playbook
from test_rerun import refused

pytestmark = [pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory"),
              pytest.mark.every_platform]   # issue 20: on every platform

BAD_ADDRESSES = [
    # A trailing newline passed `is regex('...$')` ($ matches before it) and split the nft rule in two:
    # the fragment failed at boot, and with it the whole firewall.
    ({"redis_exporter_allow_from": "192.0.2.10\n"}, r"redis_exporter_allow_from must be the one monitoring address"),
    ({"redis_exporter_allow_from": "192.0.2.10 "}, r"redis_exporter_allow_from must be the one monitoring address"),
    ({"redis_bind": "127.0.0.1\nrequirepass x"}, r"redis_bind must be addresses separated by single spaces"),
    ({"redis_bind": "127.0.0.1\t-::1"}, r"redis_bind must be addresses separated by single spaces"),
]


@pytest.mark.parametrize("bad, message", BAD_ADDRESSES, ids=[json.dumps(b) for b, _ in BAD_ADDRESSES])
def test_white_space_or_a_newline_in_an_address_is_refused_before_any_change(every_host, tmp_path, bad, message):
    refused(every_host, tmp_path, bad, {hostvars["inventory_hostname"]: [message] for _, _, hostvars in every_host})


BAD_FRAGMENT = """
- hosts: redis_servers
  gather_facts: false
  tasks:
    - name: A fragment nft refuses, through the module that writes the project's fragments
      redis_vps.server.redis_instance:
        socket: /nonexistent.sock
        password: unused
        config: {}
        files:
          - {path: /etc/nftables.d/zz-redis-vps-test.nft, content: "add rule inet filter input ip saddr 192.0.2.10\\n tcp dport 9121 accept\\n", validate: nft}
          - {path: /etc/redis-vps-test-written, content: "x\\n"}
"""


def test_a_fragment_that_nft_refuses_is_not_written_nor_anything_with_it(every_host, tmp_path):
    play = tmp_path / "fragment.yml"
    play.write_text(BAD_FRAGMENT)
    rc, out = playbook(path=play, env={"ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections")})
    assert rc != 0, out[-3000:]
    assert "the firewall fragment /etc/nftables.d/zz-redis-vps-test.nft does not pass nft -c (nothing was written)" in out, out[-3000:]
    for host, _, _ in every_host:
        assert not host.file("/etc/nftables.d/zz-redis-vps-test.nft").exists
        assert not host.file("/etc/redis-vps-test-written").exists
