# -*- coding: utf-8 -*-
# Copyright: (c) 2026, redis-vps contributors
# MIT License (see LICENSE in the collection)
"""redis_vps.server.host_files on the controller: the module run is skipped where the host
still holds what the task's last run recorded (module_utils/records.py), which the
validation's read of the host reported in O(recorded). An idempotent rerun then costs a
task, not a module build and run."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.redis_vps.server.plugins.module_utils import records


def held(args):
    """Whether the host holds what a task of these options asks: their digest is the one its
    record had in O(recorded) (the read earlier in the run), and nothing in them acts each time."""
    name = args.get("record")
    recorded = args.get("recorded") or {}
    if not name or not isinstance(recorded, dict) or name not in recorded:
        return False
    validated = ArgumentSpecValidator(records.ARGUMENT_SPEC).validate(dict(args))
    if validated.error_messages:
        return False  # the module says what is wrong
    params = validated.validated_parameters
    return records.skippable(params) and recorded[name] == records.digest(params)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        if held(self._task.args):
            result.update(records.unchanged_result(), recorded=True)
            return result
        result.update(self._execute_module(module_name="redis_vps.server.host_files", module_args=self._task.args,
                                           task_vars=task_vars))
        return result
