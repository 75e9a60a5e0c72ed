"""A single VPS that joined the group (molecule/ha/prepare.yml provisioned the second
host alone and wrote 200 keys to its queue before the group's converge): it started
as the primary (it was neither first nor marked), so every node has its keys, even
after the failovers of test_ha.py, and none of its passwords changed."""
import pathlib

from test_ha import nodes  # noqa: F401  (fixture)



def joiner_of(nodes):
    """groups['redis_ha'][1], as prepare.yml picks it."""
    return next(n for n in nodes if n.name == n.vars["groups"]["redis_ha"][1])


def test_every_node_has_the_joining_hosts_keys(nodes):  # noqa: F811
    for node in nodes:
        count = node.redis.run("queue", "-n", "2", "EVAL", "return #redis.call('KEYS', 'join:*')", "0")
        assert count == "200", "%s has %s of the 200 keys the single VPS held" % (node.name, count)
        assert node.redis.run("queue", "-n", "2", "GET", "join:137") == "value-137"


def test_the_joining_hosts_passwords_did_not_change(nodes):  # noqa: F811
    joiner = joiner_of(nodes)
    folder = pathlib.Path(joiner.vars["redis_credentials_dir"])
    for name in ("redis_queue_password", "redis_admin_password", "redis_monitor_password"):
        own = (folder / joiner.name / name).read_text().strip()
        assert (folder / "redis_ha" / name).read_text().strip() == own, "%s changed when the host joined" % name
    # The applications' password of its single-VPS days still works on every node's endpoint.
    queue = (folder / joiner.name / "redis_queue_password").read_text().strip()
    for node in nodes:
        assert node.redis.run("queue", "PING", user="default", password=queue) == "PONG"
