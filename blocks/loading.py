"""Load a block by name for a flow parameter, or fail early with a message that says the fix."""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from pydantic import ValidationError

from rules.config import ConfigError

B = TypeVar("B", bound=Block)

# Block types `deployments/blocks.py` creates; the others are made in the UI or in Python.
_MADE_BY_COMMAND = {"ops-store", "aws-credentials", "google-chat-webhook"}


def validation_message(exc: ValidationError) -> str:
    """The first problem of a block's validation, in one line, without the input (it may be secret)."""
    problem = exc.errors()[0]
    return str(problem.get("ctx", {}).get("error") or problem["msg"])


def _types_named(name: str) -> list[str]:
    """The types of the blocks saved under `name` (secrets not read)."""
    with get_client(sync_client=True) as client:
        documents = client.read_block_documents(include_secrets=False)
    return sorted({d.block_type.name for d in documents if d.name == name and d.block_type})


def load_block(block_type: type[B], name: str, parameter: str) -> B:
    """`block_type.load(name)`, with a `ConfigError` naming the parameter when it is missing."""
    try:
        return block_type.load(name)
    except RuntimeError as exc:  # Prefect's wrapping of a ValidationError
        if not isinstance(exc.__cause__, ValidationError):
            raise
        # Saved before a check existed, or edited in the UI.
        raise ConfigError(f"{block_type.__name__} block {name!r} (parameter `{parameter}`): "
                          f"{validation_message(exc.__cause__)}") from None
    except ValueError:
        other = _types_named(name)
        if other:
            raise ConfigError(
                f"block {name!r} (parameter `{parameter}`) has type {' / '.join(other)}, not "
                f"{block_type.get_block_type_name()}: give the name of a block of that type."
            ) from None
        how = (" or with `dataplatform-ops setup`"
               if block_type.get_block_type_slug() in _MADE_BY_COMMAND else
               f" (Blocks > + > {block_type.get_block_type_name()}) or in Python (README: Pointing it at real systems)")
        raise ConfigError(
            f"{block_type.__name__} block {name!r} (parameter `{parameter}`) does not exist: "
            f"create it in the Prefect UI{how}, or pass the name of an existing one."
        ) from None
