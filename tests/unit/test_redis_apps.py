"""The app-host topology (plugins/filter/redis_apps.py): what each app host uses and
every refusal the validation play shows."""
from ansible_collections.redis_vps.server.plugins.filter.redis_apps import app_topology


def hv(**hosts):
    return {h: dict(v) for h, v in hosts.items()}


def test_one_redis_host_serves_every_app_host():
    groups = {"redis_servers": ["r"], "php_servers": ["r", "a1", "a2"], "redis_clients": ["w"]}
    out = app_topology(groups, hv(r={"ansible_host": "10.0.0.1"}, a1={"ansible_host": "10.0.0.2"},
                                  a2={"redis_private_address": "10.0.0.3", "ansible_host": "a2.example"},
                                  w={"redis_ha_address": "10.0.0.4"}))
    assert out["errors"] == {}
    assert sorted(out["apps"]) == ["a1", "a2", "w"]
    assert out["apps"]["a1"]["uses"] == "r" and not out["apps"]["a1"]["ha"]
    assert out["clients"] == {"r": {"cache": ["a1", "a2", "w"], "queue": ["a1", "a2", "w"]}}
    assert out["addresses"]["a2"] == "10.0.0.3" and out["addresses"]["w"] == "10.0.0.4"


def test_ha_group_queue_everywhere_cache_of_the_first_host():
    groups = {"redis_servers": ["h1", "h2", "h3"], "redis_ha": ["h1", "h2", "h3"], "redis_clients": ["a"]}
    out = app_topology(groups, hv(h1={"ansible_host": "10.0.0.1"}, h2={"ansible_host": "10.0.0.2"},
                                  h3={"ansible_host": "10.0.0.3"}, a={"ansible_host": "10.0.0.9"}))
    assert out["errors"] == {}
    assert out["apps"]["a"]["ha"] and out["apps"]["a"]["cache_host"] == "h1"
    assert out["clients"]["h1"] == {"cache": ["a"], "queue": ["a"]}
    assert out["clients"]["h3"] == {"cache": [], "queue": ["a"]}


def test_refusals_name_the_variable():
    groups = {"redis_servers": ["r1", "r2"], "php_servers": ["a", "b", "c"], "redis_ha": ["x"],
              "redis_clients": ["r1", "x"]}
    out = app_topology(groups, hv(r1={"ansible_host": "10.0.0.1"}, r2={"ansible_host": "10.0.0.2"},
                                  a={"ansible_host": "10.0.0.3"},
                                  b={"ansible_host": "10.0.0.4", "redis_client_of": "nowhere"},
                                  c={"redis_private_address": "10.0.0.5 ; drop", "redis_client_of": "r2"},
                                  x={"ansible_host": "10.0.0.6"}))
    errors = out["errors"]
    assert "set redis_client_of" in errors["a"][0]                      # ambiguous
    assert "redis_client_of of b names 'nowhere'" in errors["b"][0]     # unknown name
    assert "redis_private_address" in errors["c"][0]                    # not an address (fullmatch)
    assert "in redis_servers" in errors["r1"][0]                        # redis_clients and redis_servers
    assert "redis_ha" in errors["x"][0]                                 # app host in redis_ha
    assert sorted(out["apps"]) == ["c"] and out["apps"]["c"]["uses"] == "r2"


def test_no_redis_host_to_use():
    out = app_topology({"php_servers": ["a"]}, hv(a={"ansible_host": "10.0.0.3"}))
    assert "no host in redis_servers" in out["errors"]["a"][0]


def test_a_single_vps_has_no_app_hosts_and_needs_no_address():
    out = app_topology({"redis_servers": ["r"], "php_servers": ["r"]}, hv(r={"ansible_host": "vps.example"}))
    assert out == {"apps": {}, "clients": {}, "addresses": {"r": "vps.example"}, "errors": {}}
