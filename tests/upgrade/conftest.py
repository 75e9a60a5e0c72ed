import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from helpers import credentials, engine, expected_maxmemory, hostvars, instances, redis  # noqa: E402,F401  (fixtures)


def pytest_collection_modifyitems(items):
    """The upgrade first: molecule hands pytest the folders in name order (infra before
    upgrade), and tests/infra must run on the upgraded host."""
    items.sort(key=lambda item: "tests/upgrade/" not in str(item.path).replace("\\", "/"))
