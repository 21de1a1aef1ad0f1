"""Create the blocks the flows load by default (idempotent; `--overwrite` to change them).

    uv run python -m deployments.blocks --store-url postgresql://ops@db:5432/ops \
        --chat-url https://chat.googleapis.com/v1/spaces/...

Blocks: `ops-store`, `aws` (ambient credentials), and `ops-chat` when a chat URL is given,
with the store as its outbox, so messages wait there while Google Chat is down. Secrets are
read from the arguments or environment (`GOOGLE_CHAT_WEBHOOK_URL`, `OPS_STORE_URL`) and only
ever stored in the blocks. A relative SQLite path is refused unless `--allow-relative-sqlite`:
a worker that runs flows elsewhere (ECS, Kubernetes) would start from an empty store each run.
"""

from __future__ import annotations

import argparse
import os
from typing import TypeVar

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import ValidationError

from blocks.google_chat import GoogleChatWebhook
from blocks.loading import validation_message
from blocks.store import OpsStore
from rules.config import ConfigError

B = TypeVar("B", bound=Block)


def _save(block: B, name: str, overwrite: bool) -> tuple[B, str]:
    """Save `block` as `name` unless one exists and not `overwrite`; the block now in use."""
    try:
        existing = type(block).load(name)
    except RuntimeError as exc:  # it exists but no longer validates: say so, keep it
        if not isinstance(exc.__cause__, ValidationError):
            raise
        if not overwrite:
            raise ConfigError(f"{name}: {validation_message(exc.__cause__)} "
                              "(--overwrite to replace it)") from None
        existing = None
    except ValueError:
        existing = None
    if existing is not None and not overwrite:
        return existing, f"{name}: kept (exists)"
    block.save(name, overwrite=True)
    return block, f"{name}: saved"


def persistent_store(url: str | None, allow_relative_sqlite: bool) -> OpsStore:
    """The store block for `url`, refusing a relative SQLite path unless allowed."""
    store = OpsStore(url=url) if url else OpsStore()
    if store.is_relative_sqlite and not allow_relative_sqlite:
        raise ConfigError(
            f"--store-url (OpsStore `url`): {store.safe_url} is a relative SQLite path, which a "
            "remote worker forgets between runs; use postgresql+psycopg://user@host:5432/db, or "
            "sqlite:////absolute/path/store.db on a persistent volume "
            "(--allow-relative-sqlite for a local trial)"
        )
    return store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create the collection's default blocks.")
    parser.add_argument("--chat-url", default=os.environ.get("GOOGLE_CHAT_WEBHOOK_URL"))
    parser.add_argument("--store-url", default=os.environ.get("OPS_STORE_URL"))
    parser.add_argument("--allow-relative-sqlite", action="store_true",
                        help="accept sqlite:///relative.db (flows run on this machine only)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        store = persistent_store(args.store_url, args.allow_relative_sqlite)
        store.check()
        store, said = _save(store, "ops-store", args.overwrite)
        print(said)
        print(_save(AwsCredentials(), "aws", args.overwrite)[1])
        if args.chat_url:
            chat = GoogleChatWebhook(url=args.chat_url, outbox=store)
            print(_save(chat, "ops-chat", args.overwrite)[1])
    except ValidationError as exc:
        parser.exit(2, f"error: {validation_message(exc)}\n")
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
