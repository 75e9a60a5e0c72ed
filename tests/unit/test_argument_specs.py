"""Every variable a role reads is declared in its meta/argument_specs.yml.

The specs are what Ansible checks at the start of every run and what tools/specdoc
turns into docs/variables.md's tables, so an input missing there is neither checked nor
documented. The rule for "a variable the role reads":

* Its name is public and starts with the role's prefix, the role's name and "_"
  (roles/redis: redis_, roles/php_session: php_session_, ...). A name belongs to the
  role with the longest matching prefix: redis_kernel_somaxconn is redis_kernel's,
  not redis's. Names starting with "_" are private and never count.
* It is read where the role reads variables: Jinja code ({{ }}, {% %}) in the
  string values of tasks/, handlers/, defaults/ and vars/ files and in templates/,
  plus the bare expressions of when, changed_when, failed_when, until, that and var.
  Inside that code, a name counts unless it is an attribute (x.name), a filter
  (| name), a test (is name), a keyword argument or {% set %} target (name=) or a
  {% for %} loop variable; a string literal that is exactly such a name counts too
  (lookup('vars', 'redis_x') reads redis_x). Prose, task names and YAML comments
  read nothing and are not scanned.
* Every top-level key of defaults/main.yml with the prefix is an input: a default
  without a spec entry fails as well. Keys of vars/ files and of a task's vars: are
  set by the role, not read (all of them are private, _name, today).
* Not inputs: the facts the role produces itself (set_fact keys, register names),
  which must be listed in PRODUCED_FACTS, and the role's own plugins whose names
  start with the prefix (filters from FilterModule.filters(), tests from
  TestModule.tests(), modules in library/, lookups in lookup_plugins/).

Options are checked against the union of every entry point of the spec (main,
validate, wait, ...).
"""
import ast
import pathlib
import re

import jinja2
import pytest
import yaml

ROLES_DIR = pathlib.Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.parents[1].name for p in ROLES_DIR.glob("*/meta/argument_specs.yml"))
SCANNED_DIRS = ("tasks", "handlers", "defaults", "vars", "templates")
# Keys whose string value is a Jinja expression without {{ }}.
BARE_EXPRESSION_KEYS = {"when", "changed_when", "failed_when", "until", "that", "var"}
SET_FACT_MODULES = {"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"}

# Public facts each role sets for others (or for its own later tasks) to read. They are
# outputs, not inputs, so they belong in no spec. Every set_fact or register name with
# the role's prefix must be listed here, and every name listed must still be set.
PRODUCED_FACTS = {
    # tasks/credentials.yml (the entry point `credentials`): the passwords in use, given or
    # generated; redis_backup and php_session include it and read theirs from it.
    "redis": {"redis_credentials",
              # tasks/status.yml: each instance's health, for the report and its JSON file.
              "redis_health",
              # tasks/adopt.yml: what an adoption moved; php_session reloads PHP-FPM when pools changed.
              "redis_adopt_report",
              # The entry points validate and validate_apps: the packages this host needs from the role
              # (and from redis_endpoint on an app host), for playbooks/packages.yml's one apt transaction.
              "redis_packages_wanted", "redis_client_packages_wanted",
              # validate: the host's packages and masked units as its read found them, for
              # playbooks/packages.yml's vps_packages_found (no look of its own on a rerun).
              "redis_host_inventory",
              # validate: the digests of the records of the last run's host_files tasks that the host
              # still holds, for playbooks/packages.yml's host_files_recorded (no module run for them).
              "redis_host_records"},
    # tasks/main.yml: the X.Y of the newest php-fpmX.Y on the host, used in paths and units.
    # The entry point validate: the packages for playbooks/packages.yml (as every role's below).
    "php_session": {"php_session_php_version", "php_session_packages_wanted"},
    "redis_backup": {"redis_backup_packages_wanted"},
    # The entry point status: each instance's exporter, for the redis role's health report
    # (playbooks/status.yml); validate: the packages.
    "redis_exporter": {"redis_exporter_status", "redis_exporter_packages_wanted"},
    # tasks/prepare.yml (the entry point prepare), for the redis role: the current primary's peer
    # address, this host's Sentinel's answer (the health report), the peers' firewall fragment.
    "redis_ha": {"redis_ha_primary_address", "redis_ha_seen", "redis_ha_files"},
    "vps_hardening": {"vps_hardening_packages_wanted"},
    # tasks/status.yml: the endpoints' state on an app host (playbooks/status.yml).
    "redis_endpoint": {"redis_endpoint_health"},
    # tasks/main.yml: packages installed in this run; the other roles skip their
    # install when theirs are all in it.
    "vps_packages": {"vps_packages_ensured"},
}

# Variables the redis role reads that its spec does not declare yet. Only the redis
# role may be listed (its spec is being reworked elsewhere); the other roles' gaps are
# fixed in their specs. A listed name that is no longer a gap fails the test, so the
# list can only shrink: remove the name from here when its spec entry lands.
KNOWN_GAPS = {
    "redis": set(),
}

# Names with a role's prefix that are not variables at all.
NOT_VARIABLES = {
    # inventory groups: the hosts that share one replicated queue (groups['redis_ha']),
    # and every Redis host (groups['redis_servers'])
    "redis": {"redis_ha", "redis_servers"},
}

_ENV = jinja2.Environment()


class _Untemplated(str):
    """A value under one of Ansible's tags (!unsafe, !vault): Ansible does not template it."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's tags instead of refusing them."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: (
    _Untemplated(loader.construct_scalar(node)) if isinstance(node, yaml.ScalarNode) else None))


def _load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _owner(name):
    """The role whose prefix is the longest start of `name`, or None."""
    owners = [role for role in ROLES if name.startswith(role + "_") and len(name) > len(role) + 1]
    return max(owners, key=len) if owners else None


def _jinja_names(source):
    """Variable names read by a piece of Jinja text (template syntax)."""
    tokens = [(kind, value) for _, kind, value in _ENV.lex(source) if kind != "whitespace"]
    names, loop_targets = set(), False
    for i, (kind, value) in enumerate(tokens):
        before = tokens[i - 1] if i else (None, None)
        after = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if kind == "name" and value == "for" and before[0] == "block_begin":
            loop_targets = True
        elif kind == "name" and value == "in":
            loop_targets = False
        elif kind == "name" and not loop_targets:
            if before == ("operator", ".") or before == ("operator", "|") or before == ("name", "is") \
                    or (before == ("name", "not") and i > 1 and tokens[i - 2] == ("name", "is")) \
                    or after == ("operator", "="):
                continue
            names.add(value)
        elif kind == "string":
            literal = value[1:-1]  # only plain names matter: no escapes to undo
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", literal):
                names.add(literal)
    return names


def _yaml_reads(node, key=None):
    """Names read by the Jinja in a parsed YAML document."""
    if isinstance(node, dict):
        return set().union(*(_yaml_reads(v, k) for k, v in node.items()))
    if isinstance(node, list):
        return set().union(*(_yaml_reads(v, key) for v in node))
    if isinstance(node, str) and not isinstance(node, _Untemplated):
        return _jinja_names("{{ %s }}" % node if key in BARE_EXPRESSION_KEYS else node)
    return set()


def _yaml_sets(node):
    """Names a task file sets: set_fact keys and register names."""
    found = set()
    if isinstance(node, dict):
        if isinstance(node.get("register"), str):
            found.add(node["register"])
        for module in SET_FACT_MODULES & set(node):
            found.update(k for k in (node[module] or {}) if k != "cacheable")
        for value in node.values():
            found |= _yaml_sets(value)
    elif isinstance(node, list):
        for value in node:
            found |= _yaml_sets(value)
    return found


def _plugin_names(role_dir):
    """Names of the role's own filters, tests, modules and lookups."""
    names = {p.stem for sub in ("library", "lookup_plugins") for p in (role_dir / sub).glob("*.py")}
    for sub, method in (("filter_plugins", "filters"), ("test_plugins", "tests")):
        for path in (role_dir / sub).glob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            dicts = [node.value for func in ast.walk(tree)
                     if isinstance(func, ast.FunctionDef) and func.name == method
                     for node in ast.walk(func) if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict)]
            if dicts:
                names.update(k.value for d in dicts for k in d.keys if isinstance(k, ast.Constant))
            else:  # not a literal dict: every function of the file may be one
                names.update(n.name for n in tree.body if isinstance(n, ast.FunctionDef))
    return names


def scan_role(role_dir):
    """(reads, sets): name -> files (relative to roles/) where the role reads it; names it sets."""
    reads, sets = {}, set()
    for sub in SCANNED_DIRS:
        for path in sorted(p for p in (role_dir / sub).rglob("*") if p.is_file()):
            where = str(path.relative_to(role_dir.parent))
            try:
                if sub == "templates" or path.suffix not in (".yml", ".yaml"):
                    names = _jinja_names(path.read_text(encoding="utf-8"))
                else:
                    doc = _load(path)
                    names = _yaml_reads(doc)
                    if sub == "defaults" and isinstance(doc, dict):
                        names |= set(doc)
                    if sub in ("tasks", "handlers"):
                        sets |= _yaml_sets(doc)
            except jinja2.TemplateSyntaxError as error:
                pytest.fail("%s: Jinja that does not parse: %s" % (where, error))
            for name in names:
                reads.setdefault(name, []).append(where)
    role = role_dir.name
    private_or_other = [n for n in reads if n.startswith("_") or _owner(n) != role]
    for name in private_or_other:
        del reads[name]
    for name in _plugin_names(role_dir) | sets:
        reads.pop(name, None)
    return reads, {n for n in sets if _owner(n) == role}


def spec_of(role):
    return _load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]


def _options(options, path=""):
    """(dotted name, option) of every option, suboptions included."""
    for name, option in (options or {}).items():
        yield path + name, option
        yield from _options(option.get("options"), path + name + ".")


def _is_jinja(value):
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_is_jinja(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_jinja(v) for v in value)
    return False


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_the_role_reads_is_in_its_spec(role):
    reads, _ = scan_role(ROLES_DIR / role)
    declared = {name for entry in spec_of(role).values() for name in (entry.get("options") or {})}
    missing = {name: files for name, files in reads.items()
               if name not in declared and name not in NOT_VARIABLES.get(role, set())}
    known = KNOWN_GAPS.get(role, set())
    new = sorted(set(missing) - known)
    assert not new, "role %s reads variables its meta/argument_specs.yml does not declare:\n%s" % (
        role, "\n".join("  %s (used in %s)" % (n, ", ".join(sorted(set(missing[n])))) for n in new))
    closed = sorted(known - set(missing))
    assert not closed, "role %s: no longer gaps, remove them from KNOWN_GAPS: %s" % (role, ", ".join(closed))


@pytest.mark.parametrize("role", ROLES)
def test_public_facts_the_role_sets_are_listed(role):
    _, sets = scan_role(ROLES_DIR / role)
    listed = PRODUCED_FACTS.get(role, set())
    assert sets <= listed, (
        "role %s sets public facts %s: add them to PRODUCED_FACTS with a comment, or make them private (_%s_...)"
        % (role, ", ".join(sorted(sets - listed)), role))
    assert listed <= sets, "role %s no longer sets %s: remove from PRODUCED_FACTS" % (
        role, ", ".join(sorted(listed - sets)))


@pytest.mark.parametrize("role", ROLES)
def test_every_spec_option_has_a_type_and_a_description(role):
    bad = ["%s.%s" % (entry_point, name)
           for entry_point, entry in spec_of(role).items()
           for name, option in _options(entry.get("options"))
           if not option.get("type") or not option.get("description")]
    assert not bad, "role %s: options without a type or a description in meta/argument_specs.yml: %s" % (
        role, ", ".join(bad))


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_match_defaults_main(role):
    defaults_file = ROLES_DIR / role / "defaults" / "main.yml"
    defaults = (_load(defaults_file) or {}) if defaults_file.exists() else {}
    differ = ["%s.%s: spec %r, defaults/main.yml %r" % (entry_point, name, option["default"], defaults[name])
              for entry_point, entry in spec_of(role).items()
              for name, option in (entry.get("options") or {}).items()
              if "default" in option and name in defaults and not _is_jinja(defaults[name])
              and option["default"] != defaults[name]]
    assert not differ, "role %s: spec defaults that differ from defaults/main.yml:\n  %s" % (
        role, "\n  ".join(differ))


def test_the_scan_finds_reads_and_ignores_the_rest(tmp_path, monkeypatch):
    """The rule on a made-up role `demo` (beside a role `demo_extra` that owns demo_extra_*)."""
    role = tmp_path / "demo"
    for sub in ("tasks", "defaults", "templates", "filter_plugins", "library"):
        (role / sub).mkdir(parents=True)
    (role / "defaults" / "main.yml").write_text("demo_declared: 1\n_demo_private: 2\n")
    (role / "tasks" / "main.yml").write_text(
        "- name: Uses demo_in_a_task_name\n"
        "  demo_module:\n"
        "    value: \"{{ demo_read | demo_filter }}\"\n"
        "    other: \"{{ item.demo_attribute | default(demo_default_arg) }}\"\n"
        "    raw: !unsafe \"{{ demo_unsafe }}\"\n"
        "  when: demo_condition is demo_test and demo_extra_owned\n"
        "  register: demo_registered  # demo_in_a_comment\n"
        "- ansible.builtin.set_fact:\n"
        "    demo_fact: \"{{ lookup('ansible.builtin.vars', 'demo_by_name') }}\"\n"
        "- ansible.builtin.debug:\n"
        "    msg: \"{{ demo_fact }} {% for demo_loop in demo_list %}{% set demo_local = 1 %}{% endfor %}\"\n")
    (role / "templates" / "x.conf.j2").write_text("# demo_prose\n{{ demo_in_template }} {# demo_commented #}\n")
    (role / "filter_plugins" / "f.py").write_text(
        "class FilterModule:\n    def filters(self):\n        return {'demo_filter': str}\n")
    (role / "library" / "demo_module.py").write_text("")
    monkeypatch.setitem(globals(), "ROLES", ["demo", "demo_extra"])
    reads, sets = scan_role(role)
    assert set(reads) == {"demo_declared", "demo_read", "demo_default_arg", "demo_condition",
                          "demo_by_name", "demo_list", "demo_in_template"}
    assert reads["demo_in_template"] == ["demo/templates/x.conf.j2"]
    assert sets == {"demo_registered", "demo_fact"}
