# -*- coding: utf-8 -*-
# Copyright: (c) 2026, redis-vps contributors
# MIT License (see LICENSE in the collection)
"""The AnsibleModule of every module of this collection: it logs to the target's journal
which options it was given, never their values.

AnsibleModule logs each invocation to the host's journal ("Invoked with NAME=VALUE ...").
An option marked no_log is left out there only at the top level: a list or a dict of
suboptions is logged as its Python repr, where a multi-line secret (a config file's
content with a password in it, a password file's "secret\\n") is escaped and no longer
matches the value Ansible masks, so it reached the journal in clear. The modules here
pass whole files (redis.conf with masterauth, sentinel.conf, the credential store, the
exporter's password file), so none of their values is logged: the option names are
enough to see what ran. The task's own output is masked by no_log as before.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule


class QuietModule(AnsibleModule):
    """AnsibleModule whose journal line names the options given and shows no value."""

    def _log_invocation(self):
        given = sorted(name for name, value in self.params.items() if value is not None)
        self.log("Invoked with the options %s (values not logged)" % (", ".join(given) or "none"))
