"""Unit tests import the roles' Python files directly."""
import pathlib
import sys

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"
for folder in ("redis/filter_plugins", "redis/library", "redis/module_utils", "php_session/filter_plugins"):
    sys.path.insert(0, str(ROLES / folder))
# The modules import the role's module_utils as Ansible ships them to the host.
import ansible.module_utils  # noqa: E402
import redis_resp  # noqa: E402

sys.modules["ansible.module_utils.redis_resp"] = redis_resp
ansible.module_utils.redis_resp = redis_resp
