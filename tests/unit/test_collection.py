"""The repository is also the collection of galaxy.yml (redis_vps.server).

plugins/ is the one home of the collection's Python: its modules (plugins/modules), the
code they share (plugins/module_utils) and its filters (plugins/filter). ansible-core gives
a role of a collection neither a library/ nor a filter_plugins/ of its own, and finds a
collection's module or filter only by its full name, so no role keeps Python of its own and
every task names the collection's modules and filters in full
(redis_vps.server.redis_instance, | redis_vps.server.redis_bytes): that works from this
repository too, where collections/ (next to site.yml, and through playbooks/collections
next to playbooks/*.yml) links the repository in as ansible_collections/redis_vps/server.
tools/test-collection runs the built collection for real; these checks say sooner,
and where, what it would trip on.
"""
import ast
import pathlib
import re

import pytest
import yaml
from ansible_collections.redis_vps.server.plugins.filter import redis_plan

REPO = pathlib.Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
COLLECTION = "%s.%s" % (GALAXY["namespace"], GALAXY["name"])
# A role's own plugin folders: none may hold anything, plugins/ is the source.
ROLE_PLUGIN_FOLDERS = ("library", "module_utils", "filter_plugins", "test_plugins", "lookup_plugins")


def task_files():
    return sorted([*(REPO / "roles").glob("*/**/*.yml"), *(REPO / "playbooks").glob("*.yml"), REPO / "site.yml"])


@pytest.mark.parametrize("folder", ROLE_PLUGIN_FOLDERS)
def test_no_role_keeps_python_of_its_own(folder):
    found = sorted(str(path.relative_to(REPO)) for path in (REPO / "roles").glob("*/%s/*" % folder))
    assert not found, "move them to plugins/ (git mv) and call them by their full names: %s" % ", ".join(found)


@pytest.mark.parametrize("folder", ("modules", "module_utils", "filter"))
def test_plugins_holds_the_files_themselves(folder):
    files = sorted((REPO / "plugins" / folder).glob("*.py"))
    assert files
    links = [str(path.relative_to(REPO)) for path in files if path.is_symlink()]
    assert not links, links


def test_the_tests_import_the_plugins_as_ansible_names_them():
    # collections/ on sys.path (tests/unit/conftest.py): the package is the repository's plugins/.
    assert redis_plan.__name__ == "ansible_collections.redis_vps.server.plugins.filter.redis_plan"
    assert pathlib.Path(redis_plan.__file__).resolve() == REPO / "plugins" / "filter" / "redis_plan.py"


def filter_names():
    """Every filter the collection defines (FilterModule.filters() of plugins/filter/)."""
    names = set()
    for path in sorted((REPO / "plugins" / "filter").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef) and func.name == "filters":
                names.update(key.value for node in ast.walk(func) if isinstance(node, ast.Return)
                             and isinstance(node.value, ast.Dict) for key in node.value.keys if isinstance(key, ast.Constant))
    return names


def test_roles_and_playbooks_name_their_filters_in_full():
    names = filter_names()
    assert names
    # `| name` or map('name') / select('name'), ... without the collection in front.
    short = re.compile(r"(?:\|\s*|\(\s*['\"])(%s)\b" % "|".join(map(re.escape, sorted(names, key=len, reverse=True))))
    files = [*task_files(), *sorted((REPO / "roles").glob("*/templates/**/*.j2"))]
    found = ["%s:%d: %s (write %s.%s)" % (path.relative_to(REPO), number, match.group(1), COLLECTION, match.group(1))
             for path in files for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             for match in short.finditer(line)]
    assert not found, "\n".join(found)


def _task_keys(node):
    """Every key of every mapping in a parsed YAML file (a task's module is one of them)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _task_keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _task_keys(value)


def test_roles_and_playbooks_call_the_collections_modules_in_full():
    modules = {path.stem for path in (REPO / "plugins" / "modules").glob("*.py")}
    assert modules
    found = []
    for path in task_files():
        if path.parent.name in ("meta", "defaults", "vars"):
            continue   # variables and specs, not tasks (redis_adopt is also a variable)
        documents = yaml.safe_load_all(path.read_text(encoding="utf-8"))
        found += ["%s: %s (write %s.%s)" % (path.relative_to(REPO), key, COLLECTION, key)
                  for doc in documents for key in _task_keys(doc) if key in modules]
    assert not found, "\n".join(found)


def test_the_repository_resolves_as_the_collection_next_to_its_playbooks():
    here = REPO / "collections" / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    for folder in ("meta", "plugins", "roles"):
        assert (here / folder).resolve() == REPO / folder, folder
    assert (REPO / "playbooks" / "collections").resolve() == REPO / "collections"
