"""The store on SQLite and on the real PostgreSQL server: same behaviour on both."""

import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import SecretStr, ValidationError

from blocks.store import OpsStore, load_store
from rules.config import ConfigError
from rules.findings import Coverage, Finding, diff_findings

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request) -> OpsStore:
    return request.getfixturevalue("store" if request.param == "sqlite" else "pg_store")


def test_lifecycle_round_trip(any_store):
    f = Finding(kind="idle-eip", resource_id="eipalloc-1", scope="a/r", reason="unused",
                monthly_cost_usd=3.6)
    t = diff_findings(any_store.open_findings("job"), [f], T0, timedelta(hours=24), Coverage({f.scope}))
    any_store.save_transitions("job", t, T0)
    later = T0 + timedelta(days=3)
    t2 = diff_findings(any_store.open_findings("job"), [f], later, timedelta(days=7), Coverage({f.scope}))
    assert t2.is_quiet
    any_store.save_transitions("job", t2, later)
    assert any_store.first_seen("job") == {f.key: T0}  # "idle since" survives runs
    t3 = diff_findings(any_store.open_findings("job"), [], later, timedelta(days=7), Coverage({f.scope}))
    assert t3.resolved == [f.key]
    any_store.save_transitions("job", t3, later)
    assert any_store.open_findings("job") == {}
    [row] = any_store.findings_of("job")
    assert row["status"] == "resolved" and row["monthly_cost_usd"] == 3.6
    # Seen again later: a new episode, so "idle since" restarts.
    again = T0 + timedelta(days=10)
    any_store.save_transitions("job", diff_findings({}, [f], again, timedelta(days=1), Coverage({f.scope})), again)
    assert any_store.first_seen("job") == {f.key: again}


def test_metrics_watermarks_actions(any_store):
    rows = [{"name": "cost", "subject": "alice", "ts": T0 + timedelta(hours=h), "value": h}
            for h in range(3)]
    any_store.replace_metrics("bq", "cost", T0, T0 + timedelta(days=1), rows)
    any_store.replace_metrics("bq", "cost", T0, T0 + timedelta(days=1), rows)  # idempotent
    assert [r["value"] for r in any_store.metric_history("bq", "cost")] == [0, 1, 2]
    assert any_store.get_watermark("bq", "jobs") is None
    any_store.set_watermark("bq", "jobs", "2026-11-01T00:00:00Z", T0)
    any_store.set_watermark("bq", "jobs", "2026-11-02T00:00:00Z", T0)
    assert any_store.get_watermark("bq", "jobs") == "2026-11-02T00:00:00Z"
    any_store.record_action("idle", action="release-address", resource_id="eipalloc-1",
                            scope="a/r", dry_run=True, outcome="planned", detail={"usd": 3.6})
    [action] = any_store.actions_of("idle")
    assert action["outcome"] == "planned" and '"usd": 3.6' in action["detail"]


def test_unreachable_store_is_a_clear_error_without_password():
    bad = OpsStore(url="postgresql://ops:s3cret-pw@127.0.0.1:1/ops")
    with pytest.raises(ConfigError) as err:
        bad.check()
    assert "127.0.0.1:1" in str(err.value) and "s3cret-pw" not in str(err.value)


def test_missing_store_block_names_it_and_lists_the_saved_ones(tmp_path):
    OpsStore(url=f"sqlite:///{tmp_path / 'a.db'}").save("store-listed-a", overwrite=True)
    with pytest.raises(ConfigError, match="'no-such-store' \\(parameter `store`\\) does not exist") as err:
        load_store("no-such-store")
    assert "the saved ones are " in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'store-listed-a'"):
        load_store("store-listed-b")  # a typo: the closest names come first, however many are saved


@pytest.mark.parametrize("url", ["mysql://ops:s3cret-pw@db/ops", "not a url"])
def test_unsupported_store_url_is_one_line_when_built_and_when_loaded(url):
    with pytest.raises(ValidationError, match="supported schemes: sqlite, postgresql\\+psycopg"):
        OpsStore(url=url)
    name = f"bad-store-{uuid.uuid4().hex[:8]}"
    OpsStore.model_construct(url=SecretStr(url)).save(name)  # as if saved before the check
    with pytest.raises(ConfigError) as err:
        load_store(name)
    message = str(err.value)
    assert message.startswith(f"OpsStore block {name!r} (parameter `store`): OpsStore `url`: ")
    assert "supported schemes: sqlite, postgresql+psycopg" in message
    assert "\n" not in message and "s3cret-pw" not in message


def test_a_store_made_before_refusals_were_kept_gets_the_new_outbox_columns(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the outbox as earlier versions created it
        old.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, subject TEXT NOT NULL, "
                    "body TEXT NOT NULL, created_at DATETIME NOT NULL, attempts INTEGER NOT NULL, "
                    "claimed_at DATETIME, delivered_at DATETIME)")
        old.execute("INSERT INTO outbox (subject, body, created_at, attempts) "
                    "VALUES ('[t] s', 'waiting', '2026-11-01 00:00:00', 0)")
    store = OpsStore(url=f"sqlite:///{path}")
    assert store.pending_message_count() == 1
    [(message_id, _, _)] = store.claim_pending_messages()
    store.mark_message_refused(message_id, "HTTP 400")
    assert store.unsurfaced_refusals() == [(message_id, "[t] s", "HTTP 400")]
