"""Which Redis host each app host uses, from the inventory alone (issue 19).

App hosts are the hosts of php_servers that are not in redis_servers, and the hosts
of redis_clients. Each uses one Redis host: the one its redis_client_of names, else
the only host of redis_servers, else the redis_ha group when every Redis host is in
it. Pure functions: the validation play refuses what `errors` says, the redis role
opens its TLS ports to `clients`, the redis_endpoint role builds its backends from
`apps`.
"""
import ipaddress


def _get(hostvars, host, name):
    try:
        value = hostvars[host][name]
    except (KeyError, TypeError):
        return None
    return value if value not in (None, "") else None


def private_address(hostvars, host):
    """redis_private_address, else its older name redis_ha_address, else ansible_host, else the name."""
    for name in ("redis_private_address", "redis_ha_address", "ansible_host"):
        value = _get(hostvars, host, name)
        if value is not None:
            return str(value)
    return host


def is_ip(value):
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def app_topology(groups, hostvars):
    """The app hosts, what each uses, the Redis hosts' clients and the refusals.

    Returns {'apps': {app: {'uses', 'ha', 'cache_host', 'queue_hosts', 'address'}},
             'clients': {redis_host: {'cache': [apps], 'queue': [apps]}},
             'addresses': {host: private address}, 'errors': {host: [message]}}
    """
    redis = list(groups.get("redis_servers") or [])
    ha = list(groups.get("redis_ha") or [])
    php = list(groups.get("php_servers") or [])
    clients = list(groups.get("redis_clients") or [])
    apps = [h for h in php if h not in redis] + [h for h in clients if h not in php and h not in redis]
    out = {"apps": {}, "clients": {}, "addresses": {}, "errors": {}}

    def refuse(host, msg):
        out["errors"].setdefault(host, []).append(msg)

    for host in clients:
        if host in redis:
            refuse(host, "%s is in redis_clients and in redis_servers: an app host runs no Redis server "
                         "(take it out of one of the groups)." % host)
    for host in redis + apps:
        address = private_address(hostvars, host)
        out["addresses"][host] = address
        if apps and not is_ip(address):
            refuse(host, "redis_private_address (or its older name redis_ha_address) must be one IP address "
                         "(app hosts and Redis hosts reach each other by address); %s has %r." % (host, address))
    for host in apps:
        if host in ha:
            refuse(host, "%s is an app host (php_servers without redis_servers, or redis_clients) and in redis_ha: "
                         "a host of redis_ha runs Redis (put it in redis_servers too, or take it out of redis_ha)." % host)
            continue
        named = _get(hostvars, host, "redis_client_of")
        if named is not None:
            named = str(named)
            if named == "redis_ha":
                uses = "redis_ha" if ha else None
                if uses is None:
                    refuse(host, "redis_client_of of %s is redis_ha, but the inventory has no group redis_ha." % host)
            elif named not in redis:
                refuse(host, "redis_client_of of %s names %r, which is not a host of redis_servers (%s)."
                       % (host, named, ", ".join(redis) or "none"))
                uses = None
            else:
                uses = "redis_ha" if named in ha else named
        elif not redis:
            refuse(host, "%s is an app host but the inventory has no host in redis_servers to use: add the Redis "
                         "host to redis_servers." % host)
            uses = None
        elif len(redis) == 1:
            uses = "redis_ha" if redis[0] in ha else redis[0]
        elif ha and all(h in ha for h in redis):
            uses = "redis_ha"
        else:
            refuse(host, "%s is an app host and redis_servers has several hosts (%s): set redis_client_of to the "
                         "one it uses (or redis_ha)." % (host, ", ".join(redis)))
            uses = None
        if uses is None:
            continue
        queue_hosts = list(ha) if uses == "redis_ha" else [uses]
        # An app host of redis_ha uses the cache of the group's first host (inventory order).
        cache_host = queue_hosts[0]
        out["apps"][host] = {"uses": uses, "ha": uses == "redis_ha", "cache_host": cache_host,
                             "queue_hosts": queue_hosts, "address": out["addresses"][host]}
        out["clients"].setdefault(cache_host, {"cache": [], "queue": []})["cache"].append(host)
        for h in queue_hosts:
            out["clients"].setdefault(h, {"cache": [], "queue": []})["queue"].append(host)
    return out


def redis_app_topology(groups, hostvars):
    return app_topology(groups, hostvars)


class FilterModule(object):
    def filters(self):
        return {"redis_app_topology": redis_app_topology}
