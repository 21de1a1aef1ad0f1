"""Create the blocks the flows load by default (idempotent; `--overwrite` to change them).

    uv run python -m deployments.blocks --chat-url https://chat.googleapis.com/v1/spaces/...
    uv run python -m deployments.blocks --store-url postgresql://ops@db:5432/ops

Defaults: `ops-store` (SQLite file under .dataplatform-ops/), `aws` (ambient credentials),
and `ops-chat` when a chat URL is given. Secrets are read from the arguments or environment
(`GOOGLE_CHAT_WEBHOOK_URL`, `OPS_STORE_URL`) and only ever stored in the blocks.
"""

from __future__ import annotations

import argparse
import os

from prefect_aws import AwsCredentials

from blocks.google_chat import GoogleChatWebhook
from blocks.store import OpsStore


def _save(block, name: str, overwrite: bool) -> str:
    try:
        type(block).load(name)
        exists = True
    except ValueError:
        exists = False
    if exists and not overwrite:
        return f"{name}: kept (exists)"
    block.save(name, overwrite=True)
    return f"{name}: saved"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create the collection's default blocks.")
    parser.add_argument("--chat-url", default=os.environ.get("GOOGLE_CHAT_WEBHOOK_URL"))
    parser.add_argument("--store-url", default=os.environ.get("OPS_STORE_URL"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    store = OpsStore(url=args.store_url) if args.store_url else OpsStore()
    store.check()
    print(_save(store, "ops-store", args.overwrite))
    print(_save(AwsCredentials(), "aws", args.overwrite))
    if args.chat_url:
        print(_save(GoogleChatWebhook(url=args.chat_url), "ops-chat", args.overwrite))


if __name__ == "__main__":
    main()
