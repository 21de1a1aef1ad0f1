"""Load a block by name for a flow parameter, or fail early with a message that says the fix.

Jobs type their block parameters `<BlockType> | str`: Prefect's run form then offers a picker of
the saved blocks of that type (the run receives the block), and a name still works from Python,
the CLI and prefect.yaml.
"""

from __future__ import annotations

from difflib import get_close_matches
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


def _saved() -> list:
    """Every saved block document, without secrets."""
    with get_client(sync_client=True) as client:
        return client.read_block_documents(include_secrets=False)


def _types_named(documents: list, name: str) -> list[str]:
    return sorted({d.block_type.name for d in documents if d.name == name and d.block_type})


def _names_of(documents: list, block_type: type[Block]) -> list[str]:
    slug = block_type.get_block_type_slug()
    return sorted(d.name for d in documents if d.block_type and d.block_type.slug == slug and d.name)


def load_block(block_type: type[B], name: B | str, parameter: str) -> B:
    """`block_type.load(name)`, with a `ConfigError` naming the parameter when it is missing. A
    block itself (picked from the saved ones in a run's form) is used as it is."""
    if isinstance(name, block_type):
        return name
    try:
        return block_type.load(name)
    except RuntimeError as exc:  # Prefect's wrapping of a ValidationError
        if not isinstance(exc.__cause__, ValidationError):
            raise
        # Saved before a check existed, or edited in the UI.
        raise ConfigError(f"{block_type.__name__} block {name!r} (parameter `{parameter}`): "
                          f"{validation_message(exc.__cause__)}") from None
    except ValueError:
        documents = _saved()
        other = _types_named(documents, name)
        if other:
            raise ConfigError(
                f"block {name!r} (parameter `{parameter}`) has type {' / '.join(other)}, not "
                f"{block_type.get_block_type_name()}: give the name of a block of that type."
            ) from None
        how = (" or with `dataplatform-ops setup`"
               if block_type.get_block_type_slug() in _MADE_BY_COMMAND else
               f" (Blocks > + > {block_type.get_block_type_name()}) or in Python (README: Pointing it at real systems)")
        names = _names_of(documents, block_type)
        close = get_close_matches(name, names, n=3, cutoff=0.6)
        existing = (f"did you mean {' or '.join(map(repr, close))}? " if close else "") + (
            f"the saved ones are {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}"
            if names else "none is saved yet")
        raise ConfigError(
            f"{block_type.__name__} block {name!r} (parameter `{parameter}`) does not exist "
            f"({existing}): create it in the Prefect UI{how}, or pass the name of an existing one."
        ) from None
