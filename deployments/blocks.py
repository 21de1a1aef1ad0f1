"""Create the blocks the flows load by default (idempotent; `--overwrite` to change them).

    dataplatform-ops setup --store-url postgresql://ops@db:5432/ops --aws-region eu-west-1 \
        --chat-url https://chat.googleapis.com/v1/spaces/...

Blocks: `ops-store`, `aws` (ambient credentials in the given region, optionally through a
custom endpoint), and `ops-chat` when a chat URL is given, with the store as its outbox, so
messages wait there while Google Chat is down. Secrets are read from the arguments or
environment (`GOOGLE_CHAT_WEBHOOK_URL`, `OPS_STORE_URL`) and only ever stored in the blocks. A
relative SQLite path is refused unless `--allow-relative-sqlite`: a worker that runs flows
elsewhere (ECS, Kubernetes) would start from an empty store each run. A Prefect API that is
still starting is waited for (bounded), saying so in one line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import ValidationError

from blocks.google_chat import GoogleChatWebhook
from blocks.loading import validation_message
from blocks.store import OpsStore
from rules.config import ConfigError
from rules.text import redact

B = TypeVar("B", bound=Block)
API_WAIT_SECONDS = 60


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


def aws_block(region: str | None, endpoint_url: str | None) -> AwsCredentials:
    """Ambient credentials (instance or task role, environment, profile) in `region`; a block
    without one would fail at the first AWS call of every run, so it is refused here."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("--aws-region: the `aws` credentials block needs a region (e.g. eu-west-1); "
                          "pass --aws-region, or set AWS_DEFAULT_REGION")
    params = AwsClientParameters(endpoint_url=endpoint_url) if endpoint_url else AwsClientParameters()
    return AwsCredentials(region_name=region, aws_client_parameters=params)


def wait_for_api(timeout: float = API_WAIT_SECONDS, out: Callable[[str], None] = print) -> None:
    """Wait (at most `timeout` s) for a Prefect API that is still starting, saying so once.

    Without PREFECT_API_URL, Prefect starts a temporary server itself: nothing to wait for.
    """
    url = PREFECT_API_URL.value()
    if not url:
        return
    shown, deadline, told = redact(url), time.monotonic() + timeout, False
    while True:
        try:
            status = httpx.get(f"{url.rstrip('/')}/health", timeout=5).status_code
            if status == 200:
                return
            why = f"HTTP {status}"
        except httpx.HTTPError as exc:
            why = type(exc).__name__
        if time.monotonic() >= deadline:
            raise ConfigError(f"the Prefect API at {shown} did not answer within {timeout:.0f} s ({why}): "
                              "start the server (`prefect server start`), or fix PREFECT_API_URL")
        if not told:
            out(f"waiting up to {timeout:.0f} s for the Prefect API at {shown} ({why}) ...")
            told = True
        time.sleep(1)


def create_blocks(
    *,
    chat_url: str | None,
    store_url: str | None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
    allow_relative_sqlite: bool = False,
    overwrite: bool = False,
    wait_seconds: float = API_WAIT_SECONDS,
    out: Callable[[str], None] = print,
) -> None:
    """Save `ops-store`, `aws` and (with a chat URL) `ops-chat`; raises `ConfigError` or
    `ValidationError` on bad input, before anything is saved."""
    store = persistent_store(store_url, allow_relative_sqlite)
    aws = aws_block(aws_region, aws_endpoint_url)
    chat = GoogleChatWebhook(url=chat_url, outbox=store) if chat_url else None
    store.check()
    wait_for_api(wait_seconds, out)
    store, said = _save(store, "ops-store", overwrite)
    out(said)
    out(_save(aws, "aws", overwrite)[1])
    if chat is not None:
        chat.outbox = store
        out(_save(chat, "ops-chat", overwrite)[1])
