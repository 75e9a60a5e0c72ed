"""Every module of the collection logs to the host's journal the names of its options, never
their values: AnsibleModule's own line ("Invoked with NAME=VALUE") shows a list or dict of
suboptions as its repr, where a multi-line no_log value is escaped and left in clear."""
import json
import pathlib

import pytest
from ansible.module_utils import basic

from ansible_collections.redis_vps.server.plugins.module_utils.quiet_module import QuietModule

MODULES = pathlib.Path(__file__).resolve().parents[2] / "plugins" / "modules"
SECRET = "masterauth S3cretPassw0rd\nuser default on #abc\n"
SPEC = dict(name=dict(type="str"),
            files=dict(type="list", elements="dict", options=dict(path=dict(type="path"),
                                                                   content=dict(type="str", no_log=True))))


def invoke(monkeypatch, cls):
    args = {"ANSIBLE_MODULE_ARGS": {"name": "queue", "files": [{"path": "/etc/redis/redis-queue.conf", "content": SECRET}]}}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps(args).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    logged = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: logged.append(msg))
    module = cls(argument_spec=SPEC, supports_check_mode=True)
    assert module.params["files"][0]["content"] == SECRET
    return logged


def test_ansible_modules_own_line_leaks_a_multi_line_secret_in_a_suboption(monkeypatch):
    """Why QuietModule exists: the plain AnsibleModule logs this secret (if it ever stops
    doing so, QuietModule is no longer needed)."""
    logged = invoke(monkeypatch, basic.AnsibleModule)
    assert logged and "S3cretPassw0rd" in logged[0]


def test_the_quiet_module_logs_the_option_names_and_no_value(monkeypatch):
    logged = invoke(monkeypatch, QuietModule)
    assert logged == ["Invoked with the options files, name (values not logged)"]


@pytest.mark.parametrize("path", sorted(MODULES.glob("*.py")), ids=lambda p: p.stem)
def test_every_module_of_the_collection_is_a_quiet_module(path):
    source = path.read_text()
    assert "QuietModule(" in source and "AnsibleModule(" not in source
