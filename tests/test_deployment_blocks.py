"""`dataplatform-ops setup` (deployments/blocks.py): the blocks it saves are the production ones."""

from __future__ import annotations

import pytest
from prefect.blocks.abstract import NotificationError
from prefect_aws import AwsCredentials

from blocks.google_chat import GoogleChatWebhook
from blocks.store import OpsStore, load_store
from deployments.chat_receiver import DOWN
from deployments.cli import app
from deployments.local_postgres import to_url


@pytest.fixture
def setup_blocks():
    """Run the command; afterwards remove what it saved under the default names."""
    def setup(argv: list[str]) -> None:
        code = app(["setup", *argv], result_action="return_value")
        if code:
            raise SystemExit(code)

    yield setup
    for block_type, name in ((GoogleChatWebhook, "ops-chat"), (OpsStore, "ops-store"),
                             (AwsCredentials, "aws")):
        try:
            block_type.delete(name)
        except ValueError:
            pass  # not saved by this test


def test_production_chat_block_holds_a_message_through_an_outage(setup_blocks, chat, pg_dsn):
    setup_blocks(["--chat-url", chat.url, "--store-url", to_url(pg_dsn), "--overwrite"])
    block = GoogleChatWebhook.load("ops-chat")
    assert block.outbox is not None and block.outbox.url == load_store("ops-store").url
    block.max_backoff_seconds, block.min_interval_seconds = 0.05, 0  # only to keep the test fast

    chat.respond_with(*[DOWN] * block.max_attempts)
    with pytest.raises(NotificationError):
        block.notify("held through the outage", subject="[t] outage")
    assert load_store("ops-store").pending_message_count() == 1

    block.notify("")  # chat is back: the next send (here only a flush) delivers what waits
    [message] = chat.delivered
    assert "held through the outage" in message.text
    assert load_store("ops-store").pending_message_count() == 0


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///relative.db", "--store-url (OpsStore `url`): sqlite:///relative.db is a relative "
                              "SQLite path, which a remote worker forgets between runs; use "
                              "postgresql+psycopg://"),
    (None, "sqlite:///.dataplatform-ops/store.db is a relative SQLite path"),  # the default too
    ("mysql://ops:s3cret-pw@db/ops", "OpsStore `url`: scheme 'mysql' is not supported; "
                                     "supported schemes: sqlite, postgresql+psycopg"),
])
def test_a_store_url_a_worker_cannot_use_is_one_clear_line(setup_blocks, capsys, url, expected):
    with pytest.raises(SystemExit) as exit_:
        setup_blocks(["--store-url", url] if url else [])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert expected in err and "s3cret-pw" not in err
    with pytest.raises(ValueError):
        OpsStore.load("ops-store")  # nothing was saved


def test_relative_sqlite_is_accepted_when_asked_for(setup_blocks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    setup_blocks(["--store-url", "sqlite:///relative.db", "--allow-relative-sqlite", "--overwrite"])
    assert OpsStore.load("ops-store").url.get_secret_value() == "sqlite:///relative.db"
    assert (tmp_path / "relative.db").exists()
