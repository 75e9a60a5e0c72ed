import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from helpers import credentials, engine, expected_maxmemory, hostvars, instances, play, redis  # noqa: E402,F401  (fixtures)


def pytest_configure(config):
    config.addinivalue_line("markers", "timed: bounds a failover's or a restart's gap for the writers, or needs the "
                                       "failovers before it; tools/test runs these alone, after every other job")


def timed_order(item):
    """The untimed tests first, then the timed ones, the rolling restarts before the failovers: the
    failovers' last test, a rerun that must change nothing, then follows both."""
    timed = item.get_closest_marker("timed") is not None
    return (timed, timed and item.path.name != "test_rolling.py")


def pytest_collection_modifyitems(config, items):
    """REDIS_VPS_TESTS=untimed runs the tests not marked timed, =timed the others (in that order, on
    the same converged hosts: tools/test runs the first part beside other jobs); unset, every test."""
    items.sort(key=timed_order)   # stable: each file's tests keep their order
    part = os.environ.get("REDIS_VPS_TESTS", "")
    if part not in ("timed", "untimed"):
        return
    keep = [item for item in items if (item.get_closest_marker("timed") is not None) == (part == "timed")]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
