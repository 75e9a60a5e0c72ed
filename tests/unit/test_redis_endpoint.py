"""HAProxy's config as roles/redis_endpoint renders it: on a host of redis_ha the same
check, servers and client certificate as before the role existed (the queue's module run
wrote it then); on an app host a cache and a queue over TLS, checked by an answer."""
import pathlib

import jinja2

TEMPLATE = pathlib.Path(__file__).resolve().parents[2] / "roles" / "redis_endpoint" / "templates" / "haproxy.cfg.j2"


def render(**kw):
    # Ansible's template module: trim_blocks on, lstrip_blocks off.
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True)
    env.filters["bool"] = lambda v: v in (True, "true", "True", "yes", 1)
    values = dict(ansible_managed="managed", redis_endpoint_tls=True, redis_endpoint_tls_dir="/etc/redis/tls",
                  redis_endpoint_check_password="PW", redis_endpoint_listeners=[])
    values.update(kw)
    return env.from_string(TEMPLATE.read_text()).render(**values)


HA_QUEUE = [{"name": "queue", "port": 6380, "check": "primary",
             "servers": [{"name": "vps-%d" % i, "address": "10.0.0.%d" % i, "port": 6380} for i in (1, 2, 3)]}]

# What the queue's module run wrote on a host of redis_ha (the old roles/redis/templates/haproxy.cfg.j2).
OLD_HA_BACKEND = """frontend queue
    bind 127.0.0.1:6380
    default_backend queue_primary

backend queue_primary
    option tcp-check
    tcp-check connect ssl
    tcp-check send "AUTH haproxy PW\\r\\n"
    tcp-check expect string +OK
    tcp-check send "INFO replication\\r\\n"
    tcp-check expect rstring role:master
    tcp-check expect rstring connected_slaves:[1-9]
    # Clients of a node that stops being the primary are cut at once, to reconnect to the new one.
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions ssl verify required ca-file /etc/redis/tls/ca.crt crt /etc/redis/tls/haproxy.pem
    server vps-1 10.0.0.1:6380 check
    server vps-2 10.0.0.2:6380 check
    server vps-3 10.0.0.3:6380 check
"""


def test_redis_ha_keeps_its_check_servers_and_certificate():
    text = render(redis_endpoint_listeners=HA_QUEUE)
    assert text.endswith(OLD_HA_BACKEND), text
    assert "frontend cache" not in text


def test_redis_ha_without_tls_checks_in_plain():
    text = render(redis_endpoint_listeners=HA_QUEUE, redis_endpoint_tls=False)
    assert "ssl" not in text.split("defaults")[1]
    assert "    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions\n" in text


def test_an_app_host_reaches_both_instances_over_tls():
    listeners = [{"name": name, "port": port, "check": "answer",
                  "servers": [{"name": "redis1", "address": "10.0.0.10", "port": port}]}
                 for name, port in (("cache", 6379), ("queue", 6380))]
    text = render(redis_endpoint_listeners=listeners, redis_endpoint_tls_dir="/etc/haproxy/redis-vps")
    for name, port in (("cache", 6379), ("queue", 6380)):
        block = text.split("\nbackend %s_server" % name)[1].split("frontend")[0]
        assert "bind 127.0.0.1:%d\n    default_backend %s_server" % (port, name) in text
        assert "tcp-check connect ssl" in block and "AUTH haproxy" not in block
        assert 'tcp-check send "PING\\r\\n"' in block and "tcp-check expect rstring ^([+]PONG|-NOAUTH)" in block
        assert "ssl verify required ca-file /etc/haproxy/redis-vps/ca.crt crt /etc/haproxy/redis-vps/haproxy.pem" in block
        assert "server redis1 10.0.0.10:%d check" % port in block
