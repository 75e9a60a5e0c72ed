"""Every module and filter of the collection has its docs where ansible-doc looks for them
(ansible-test sanity, tools/sanity, checks the modules' docs against their argument specs):
a module's DOCUMENTATION, EXAMPLES and RETURN; a filter's plugins/filter/NAME.yml, one per
filter (several filters share a Python file)."""
import ast
import pathlib

import pytest
import yaml

from test_collection import filter_names

PLUGINS = pathlib.Path(__file__).resolve().parents[2] / "plugins"
MODULES = sorted((PLUGINS / "modules").glob("*.py"))


def module_docs(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.targets[0].id: node.value.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_every_module_has_docs_examples_and_return_values(path):
    docs = module_docs(path)
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, path.name
    documentation = yaml.safe_load(docs["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    examples = yaml.safe_load(docs["EXAMPLES"])
    # Real tasks, calling the module by its full name.
    assert examples and all("redis_vps.server." + path.stem in task for task in examples), path.name
    for name, value in yaml.safe_load(docs["RETURN"]).items():
        assert {"description", "type", "returned"} <= set(value), name


@pytest.mark.parametrize("name", sorted(filter_names()))
def test_every_filter_has_its_docs_file(name):
    docs = yaml.safe_load((PLUGINS / "filter" / ("%s.yml" % name)).read_text(encoding="utf-8"))
    assert docs["DOCUMENTATION"]["name"] == name
    assert "_input" in docs["DOCUMENTATION"]["options"]
    assert "redis_vps.server.%s" % name in docs["EXAMPLES"]
    assert "_value" in docs["RETURN"]


def test_no_docs_file_without_its_filter():
    assert {p.stem for p in (PLUGINS / "filter").glob("*.yml")} == filter_names()
