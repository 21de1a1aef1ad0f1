"""Load a block by name for a flow parameter, or fail early with a message that says the fix."""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block

from rules.config import ConfigError

B = TypeVar("B", bound=Block)


def load_block(block_type: type[B], name: str, parameter: str) -> B:
    """`block_type.load(name)`, with a `ConfigError` naming the parameter when it is missing."""
    try:
        return block_type.load(name)
    except ValueError:
        raise ConfigError(
            f"{block_type.__name__} block {name!r} (parameter `{parameter}`) does not exist: "
            f"create it in the Prefect UI or with `uv run python -m deployments.blocks`, "
            f"or pass the name of an existing one."
        ) from None
