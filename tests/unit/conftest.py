"""Unit tests import the roles' Python files directly."""
import pathlib
import sys

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"
for folder in ("redis/filter_plugins", "redis/library", "redis/module_utils", "php_session/filter_plugins",
               "redis_backup/files", "redis_backup/library"):
    sys.path.insert(0, str(ROLES / folder))
# The modules import the collection's module_utils (plugins/module_utils links to the
# role's file) as Ansible ships them to the host.
import types  # noqa: E402

import redis_resp  # noqa: E402

_name = "ansible_collections.redis_vps.server.plugins.module_utils"
for _depth in range(2, _name.count(".") + 2):
    sys.modules.setdefault(".".join(_name.split(".")[:_depth]), types.ModuleType(".".join(_name.split(".")[:_depth])))
sys.modules[_name + ".redis_resp"] = redis_resp
import redis_handmade  # noqa: E402  (module_utils/redis_handmade.py, imported after redis_resp)

sys.modules[_name + ".redis_handmade"] = redis_handmade
