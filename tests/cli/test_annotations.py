"""Each task's annotations say what invoke really passes, so strict mypy checks the true types.

invoke builds a flag from a parameter's default, never from its annotation: a flag whose
default is ``None`` arrives as a string, a repeatable one as a list, ``1.0`` as a float.
"""

from __future__ import annotations

import inspect
import types
import typing

from orchestrator.cli.tasks import ns


def _kind(hint: object) -> object:
    """Return the type invoke would have to pass for ``hint`` (``X | None`` is ``X``)."""
    if isinstance(hint, types.UnionType):
        [hint] = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return typing.get_origin(hint) or hint


def test_every_task_parameter_is_annotated_with_the_kind_invoke_passes() -> None:
    checked = []
    for name in ns.task_names:
        task = ns[name]
        hints = typing.get_type_hints(task.body)
        defaults = inspect.signature(task.body).parameters
        assert hints.get("return") is type(None), name
        for arg in task.get_arguments():
            param = arg.name
            assert param in hints, (name, param)
            assert _kind(hints[param]) is arg.kind, (name, param, hints[param], arg.kind)
            default = defaults[param].default
            if default is inspect.Parameter.empty:
                assert arg.positional, (name, param)  # a required word, such as secrets' action
            else:
                assert default == arg.default or arg.kind is list, (name, param)
            checked.append((name, param))

    assert len(checked) >= 60, checked
    assert ("volumes.list", "action") in checked
