import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from helpers import limited_to, narrowed  # noqa: E402
from helpers import credentials, engine, expected_maxmemory, hostvars, instances, play, redis, scenario_hosts  # noqa: E402,F401  (fixtures)


def pytest_configure(config):
    config.addinivalue_line("markers", "every_platform: a module whose tests run on every platform of the scenario "
                                       "(issue 20's faults, the health report); the others on helpers.RERUN_PLATFORMS")


@pytest.fixture
def every_host(request, scenario_hosts):
    """The hosts a test's runs and checks cover: every host of the scenario for a module marked
    every_platform, else those of helpers.RERUN_PLATFORMS, to which its playbook() runs are limited."""
    if request.node.get_closest_marker("every_platform"):
        yield scenario_hosts
        return
    names = narrowed([hostvars["inventory_hostname"] for _, _, hostvars in scenario_hosts])
    with limited_to(names):
        yield [entry for entry in scenario_hosts if entry[2]["inventory_hostname"] in names]
