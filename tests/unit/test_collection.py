"""The repository is also the collection of galaxy.yml (redis_vps.server).

ansible-core gives a role of a collection neither its library/ nor its filter_plugins/,
and finds a filter there only by its full name. So every module and filter file of a
role is linked from plugins/ (one copy, found both ways), and the roles name their own
filters in full (redis_vps.server.redis_bytes): a short name still works from this
repository, where the roles are plain roles, but fails from the installed collection.
In this repository collections/ (next to site.yml, and through playbooks/collections
next to playbooks/*.yml) makes the full names resolve to the same files.
tools/test-collection runs the built collection for real; these checks say sooner,
and where, what it would trip on.
"""
import ast
import pathlib
import re

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
COLLECTION = "%s.%s" % (GALAXY["namespace"], GALAXY["name"])
PLUGIN_FOLDERS = {"library": "modules", "filter_plugins": "filter"}   # a role's folder -> plugins/<folder>


def role_plugins(folder):
    return sorted((REPO / "roles").glob("*/%s/*.py" % folder))


@pytest.mark.parametrize("folder", sorted(PLUGIN_FOLDERS))
def test_every_role_plugin_is_linked_from_plugins(folder):
    files = {path.resolve() for path in role_plugins(folder)}
    links = sorted((REPO / "plugins" / PLUGIN_FOLDERS[folder]).iterdir())
    assert {link.resolve() for link in links} == files
    # Links, relative, inside the repository: the artifact keeps them as they are.
    for link in links:
        assert link.is_symlink() and not pathlib.Path(link.readlink()).is_absolute(), link


def filter_names():
    """Every filter the roles define (FilterModule.filters() of their filter_plugins/)."""
    names = set()
    for path in role_plugins("filter_plugins"):
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
    files = sorted([*(REPO / "roles").glob("*/**/*.yml"), *(REPO / "roles").glob("*/templates/**/*.j2"),
                    *(REPO / "playbooks").glob("*.yml")])
    found = ["%s:%d: %s (write %s.%s)" % (path.relative_to(REPO), number, match.group(1), COLLECTION, match.group(1))
             for path in files for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             for match in short.finditer(line)]
    assert not found, "\n".join(found)


def test_the_repository_resolves_as_the_collection_next_to_its_playbooks():
    here = REPO / "collections" / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    for folder in ("meta", "plugins", "roles"):
        assert (here / folder).resolve() == REPO / folder, folder
    assert (REPO / "playbooks" / "collections").resolve() == REPO / "collections"
