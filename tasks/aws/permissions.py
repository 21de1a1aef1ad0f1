"""Every AWS-touching function declares the IAM actions it needs, so a flow's least-privilege
policy is generated from code (never hand-written) and can be tested with IAM enforcement."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def requires(*actions: str, write: bool = False) -> Callable[[F], F]:
    """Mark a function with the IAM actions it calls; put it under `@task`.

        @task
        @requires("ec2:DescribeVolumes")
        def list_volumes(...): ...
    """

    def mark(fn: F) -> F:
        fn.aws_permissions = frozenset(actions)  # type: ignore[attr-defined]
        fn.aws_write = write  # type: ignore[attr-defined]
        return fn

    return mark


def permissions_of(
    objects: Iterable[Any], include_write: bool = True, marker: str = "aws_permissions",
    write_marker: str = "aws_write",
) -> set[str]:
    """IAM actions declared by these functions, tasks or classes and by everything of ours they
    use, transitively: a helper's `@requires` counts even where its caller does not repeat it.

    Use is read from the global names a function's code refers to (and the functions, tasks and
    collections those name), so it follows calls through any module. Without `include_write`, a
    `write=True` function is skipped together with everything only it uses. `marker` and
    `write_marker` name the attributes read, so other systems' grants (Snowflake) use the same walk.
    """
    actions: set[str] = set()
    seen: set[int] = set()
    todo = list(objects)
    while todo:
        obj = todo.pop()
        fn = getattr(obj, "fn", obj)  # a Prefect task or flow: its function
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if isinstance(fn, dict):
            todo += fn.values()
        elif isinstance(fn, (list, tuple)):
            todo += fn
        if getattr(fn, write_marker, False) and not include_write:
            continue
        actions |= set(getattr(fn, marker, ()))
        code = getattr(fn, "__code__", None)
        if code is not None and fn.__module__.split(".")[0] in _OWN_PACKAGES:
            scope = fn.__globals__
            todo += [scope[name] for name in _global_names(code) if name in scope]
    return actions


# Where our AWS-calling code lives; library code (Prefect, boto3) is not walked.
_OWN_PACKAGES = {"flows", "tasks", "blocks"}


def _global_names(code: CodeType) -> set[str]:
    """Names a function's code (with its nested lambdas, comprehensions and inner functions) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _global_names(const)
    return names
