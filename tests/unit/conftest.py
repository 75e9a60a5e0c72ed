"""Unit tests import the roles' Python files directly."""
import pathlib
import sys

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"
for folder in ("redis/filter_plugins", "redis/library", "php_session/filter_plugins", "redis_backup/files",
               "redis_backup/library"):
    sys.path.insert(0, str(ROLES / folder))
