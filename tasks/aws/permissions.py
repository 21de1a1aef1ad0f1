"""Every AWS-touching function declares the IAM actions it needs, so a flow's least-privilege
policy is generated from code (never hand-written) and can be tested with IAM enforcement."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def permissions_of(objects: Iterable[Any], include_write: bool = True) -> set[str]:
    """IAM actions declared by these functions or tasks (a task's `.fn` is looked at)."""
    actions: set[str] = set()
    for obj in objects:
        fn = getattr(obj, "fn", obj)
        declared = getattr(fn, "aws_permissions", None)
        if declared is None or (getattr(fn, "aws_write", False) and not include_write):
            continue
        actions |= set(declared)
    return actions
