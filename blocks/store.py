"""The store: finding lifecycle, metric history, watermarks and the record of actions.

SQLAlchemy Core over SQLite (default, a file) or PostgreSQL (production). Tables are
created on first use; every write is one transaction, so a crash never leaves half a run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url

from rules.config import ConfigError
from rules.findings import Finding, KnownFinding, Severity, Transitions

metadata = sa.MetaData()

findings = sa.Table(
    "findings",
    metadata,
    sa.Column("job", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("resource_id", sa.String(300), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # open | resolved
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("monthly_cost_usd", sa.Float),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_alerted", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
)

# One row per job, locked while a run of that job decides and records its transitions: runs
# that overlap (a manual run during the scheduled one, two workers) take turns there.
job_turns = sa.Table(
    "job_turns",
    metadata,
    sa.Column("job", sa.String(100), primary_key=True),
    sa.Column("runs", sa.Integer, nullable=False),
)

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(100), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),  # cluster, pipeline, user, ...
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Index("ix_metrics_job_name_ts", "job", "name", "ts"),
)

watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("job", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("resource_id", sa.String(300), nullable=False),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("outcome", sa.String(30), nullable=False),  # done | skipped | failed | planned
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("flow_run_id", sa.String(40)),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
)


outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    # Refused by Google Chat even as plain text: kept, never retried, told in the next message.
    sa.Column("refused_at", sa.DateTime(timezone=True)),
    sa.Column("error", sa.Text),
    sa.Column("surfaced_at", sa.DateTime(timezone=True)),
)

# Which findings a digest marked announced, so a digest chat refuses can take that back.
announcements = sa.Table(
    "announcements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(100), nullable=False),
    sa.Column("message", sa.String(64), nullable=False, index=True),  # message_key()
    sa.Column("announced", sa.JSON, nullable=False),  # keys whose last_alerted it set
    sa.Column("resolved", sa.JSON, nullable=False),  # keys it resolved
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

CLAIM_TIMEOUT = timedelta(minutes=5)
ANNOUNCEMENT_RETENTION = timedelta(days=30)
SUPPORTED_SCHEMES = ("sqlite", "postgresql+psycopg")
_PENDING = outbox.c.delivered_at.is_(None) & outbox.c.refused_at.is_(None)


def message_key(subject: str | None, body: str) -> str:
    """Identity of a chat message as the flow rendered it and the chat block receives it."""
    return hashlib.sha256(f"{subject or ''}\n{body}".encode()).hexdigest()


def check_url(url: str) -> str:
    """`url` if it is a store URL this collection supports, else a one-line `ValueError`."""
    try:
        scheme = make_url(url).drivername
    except sa.exc.ArgumentError:
        scheme = None
    if scheme not in (*SUPPORTED_SCHEMES, "postgresql", "postgres"):
        what = f"scheme {scheme!r} is not supported" if scheme else "not a URL"
        raise ValueError(
            f"OpsStore `url`: {what}; supported schemes: {', '.join(SUPPORTED_SCHEMES)} "
            "(e.g. sqlite:////data/store.db, postgresql+psycopg://user@host:5432/db)"
        )
    return url


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything here is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _open_findings(conn: sa.Connection, job: str) -> dict[str, KnownFinding]:
    query = sa.select(findings).where(findings.c.job == job, findings.c.status == "open")
    return {
        r["key"]: KnownFinding(
            key=r["key"],
            severity=Severity(r["severity"]),
            first_seen=_utc(r["first_seen"]),
            last_alerted=_utc(r["last_alerted"]),
            kind=r["kind"],
            scope=r["scope"],
            resource_id=r["resource_id"],
        )
        for r in conn.execute(query).mappings()
    }


def _take_turn(conn: sa.Connection, job: str) -> None:
    """Lock `job`'s turn row until the transaction ends (PostgreSQL: that row; SQLite: the file)."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(job_turns)
    conn.execute(insert.values(job=job, runs=0).on_conflict_do_nothing())
    conn.execute(job_turns.update().where(job_turns.c.job == job).values(runs=job_turns.c.runs + 1))


def _save_transitions(conn: sa.Connection, job: str, transitions: Transitions, now: datetime) -> None:
    announced = {f.key for f in transitions.to_announce}
    present = [*transitions.to_announce, *transitions.still_open]
    known = {
        r.key: r
        for r in conn.execute(
            sa.select(findings.c.key, findings.c.status, findings.c.first_seen, findings.c.last_alerted)
            .where(findings.c.job == job)
        )
    }
    inserts, updates = [], []
    for f in present:
        values = {
            "kind": f.kind,
            "scope": f.scope,
            "resource_id": f.resource_id,
            "severity": f.severity.value,
            "status": "open",
            "reason": f.reason,
            "monthly_cost_usd": f.monthly_cost_usd,
            "data": f.model_dump(mode="json"),
            "last_seen": now,
            "resolved_at": None,
        }
        row = known.get(f.key)
        if row is None:
            inserts.append({**values, "job": job, "key": f.key, "first_seen": now,
                            "last_alerted": now if f.key in announced else None})
        else:
            values["first_seen"] = now if row.status != "open" else row.first_seen  # new episode
            values["last_alerted"] = now if f.key in announced else row.last_alerted
            updates.append({"b_key": f.key, **{f"v_{k}": v for k, v in values.items()}})
    # One executemany per kind of write: a sweep of 10,000 findings is two statements.
    if inserts:
        conn.execute(findings.insert(), inserts)
    if updates:
        columns = [k.removeprefix("v_") for k in updates[0] if k != "b_key"]
        conn.execute(
            findings.update()
            .where(findings.c.job == job, findings.c.key == sa.bindparam("b_key"))
            .values({c: sa.bindparam(f"v_{c}") for c in columns}),
            updates,
        )
    if transitions.resolved:
        conn.execute(
            findings.update()
            .where(findings.c.job == job, findings.c.key.in_(transitions.resolved))
            .values(status="resolved", resolved_at=now, last_alerted=now)
        )


@lru_cache(maxsize=16)
def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(parsed, pool_pre_ping=True)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # runs starting together: one creates, the others wait
            conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('dataplatform-ops schema'))"))
        metadata.create_all(conn)
        # create_all adds tables, not columns: stores made before the outbox kept refusals.
        present = {c["name"] for c in sa.inspect(conn).get_columns("outbox")}
        for column in outbox.columns:
            if column.name not in present:
                kind = column.type.compile(engine.dialect)
                conn.execute(sa.text(f"ALTER TABLE outbox ADD COLUMN {column.name} {kind}"))
    return engine


class OpsStore(Block):
    """Where findings, metric history, watermarks and actions are kept between runs.

    Example:
        ```python
        from blocks.store import OpsStore

        store = OpsStore.load("ops-store")
        store.check()
        ```
    """

    _block_type_name = "Ops Store"
    _block_type_slug = "ops-store"
    _description = "Finding lifecycle and metric history for dataplatform-ops (SQLite or PostgreSQL)."

    url: SecretStr = Field(
        default=SecretStr("sqlite:///.dataplatform-ops/store.db"),
        description=(
            "SQLAlchemy URL: `sqlite:///path/store.db` or "
            "`postgresql://user:password@host:5432/db`."
        ),
    )

    @field_validator("url")
    @classmethod
    def _supported(cls, url: SecretStr) -> SecretStr:
        check_url(url.get_secret_value())  # when the block is built, saved and loaded
        return url

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return make_url(self.url.get_secret_value()).render_as_string(hide_password=True)

    @property
    def is_relative_sqlite(self) -> bool:
        """A SQLite file named relative to the working directory (lost with a worker's container)."""
        url = make_url(self.url.get_secret_value())
        return (url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:")
                and not Path(url.database).expanduser().is_absolute())

    @property
    def engine(self) -> Engine:
        return _engine(self.url.get_secret_value())

    def check(self) -> None:
        """Connect once and create the tables; a clear `ConfigError` if that is impossible."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("select 1"))
        except Exception as exc:  # any driver error means the same thing to the caller
            _engine.cache_clear()
            raise ConfigError(
                f"OpsStore at {self.safe_url} is unreachable ({type(exc).__name__}): "
                "fix the block's `url` or start the database."
            ) from None

    # --- findings -------------------------------------------------------------------

    def open_findings(self, job: str) -> dict[str, KnownFinding]:
        with self.engine.connect() as conn:
            return _open_findings(conn, job)

    def record_run(
        self, job: str, decide: Callable[[dict[str, KnownFinding]], Transitions], now: datetime
    ) -> Transitions:
        """Decide a run's transitions from the open findings and record them, in one transaction
        during which no other run of `job` does the same: of overlapping runs, exactly one sees
        a change as new, so it is announced once and no lifecycle row is lost or doubled."""
        with self.engine.begin() as conn:
            _take_turn(conn, job)
            transitions = decide(_open_findings(conn, job))
            _save_transitions(conn, job, transitions, now)
        return transitions

    def save_transitions(self, job: str, transitions: Transitions, now: datetime) -> None:
        """Persist a run's outcome in one transaction."""
        with self.engine.begin() as conn:
            _save_transitions(conn, job, transitions, now)

    def first_seen(self, job: str) -> dict[str, datetime]:
        """When each open finding of a job was first seen: "idle since" for resources."""
        return {k: v.first_seen for k, v in self.open_findings(job).items()}

    def claim_findings(self, job: str, found: Iterable[Finding], now: datetime) -> list[Finding]:
        """Record findings the job has never recorded (open or resolved) as announced now.

        Returns only the ones this call recorded. Each is inserted in its own transaction, so
        when overlapping runs claim the same finding, the primary key lets exactly one win.
        """
        candidates = {f.key: f for f in found}
        with self.engine.connect() as conn:
            seen = set(conn.execute(
                sa.select(findings.c.key).where(findings.c.job == job,
                                                findings.c.key.in_(list(candidates)))
            ).scalars()) if candidates else set()
        claimed = []
        for key, f in candidates.items():
            if key in seen:
                continue
            try:
                with self.engine.begin() as conn:
                    conn.execute(findings.insert().values(
                        job=job, key=key, kind=f.kind, scope=f.scope, resource_id=f.resource_id,
                        severity=f.severity.value, status="open", reason=f.reason,
                        monthly_cost_usd=f.monthly_cost_usd, data=f.model_dump(mode="json"),
                        first_seen=now, last_seen=now, last_alerted=now,
                    ))
            except sa.exc.IntegrityError:  # another run claimed it first
                continue
            claimed.append(f)
        return claimed

    def findings_of(self, job: str, status: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(findings).where(findings.c.job == job)
        if status:
            query = query.where(findings.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(findings.c.key)).mappings()]

    # --- metrics, watermarks, actions ----------------------------------------------

    def record_metrics(self, job: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append metric points: dicts with name, subject, ts, value and optional labels."""
        values = [
            {
                "job": job,
                "name": r["name"],
                "subject": r["subject"],
                "ts": r["ts"],
                "value": r.get("value"),
                "labels": r.get("labels") or {},
            }
            for r in rows
        ]
        if values:
            with self.engine.begin() as conn:
                conn.execute(metrics.insert(), values)
        return len(values)

    def replace_metrics(
        self, job: str, name: str, start: datetime, end: datetime, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Replace a metric's points in [start, end): re-running a day does not double it."""
        with self.engine.begin() as conn:
            conn.execute(
                metrics.delete().where(
                    metrics.c.job == job, metrics.c.name == name,
                    metrics.c.ts >= start, metrics.c.ts < end,
                )
            )
            if rows:
                conn.execute(
                    metrics.insert(),
                    [{"job": job, "name": name, "subject": r["subject"], "ts": r["ts"],
                      "value": r.get("value"), "labels": r.get("labels") or {}} for r in rows],
                )
        return len(rows)

    def metric_history(self, job: str, name: str, subject: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(metrics).where(metrics.c.job == job, metrics.c.name == name)
        if subject is not None:
            query = query.where(metrics.c.subject == subject)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query.order_by(metrics.c.ts)).mappings()]
        for r in rows:
            r["ts"] = _utc(r["ts"])
        return rows

    def get_watermark(self, job: str, name: str) -> str | None:
        query = sa.select(watermarks.c.value).where(watermarks.c.job == job, watermarks.c.name == name)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def delete_watermark(self, job: str, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(watermarks.delete().where(watermarks.c.job == job, watermarks.c.name == name))

    def set_watermark(self, job: str, name: str, value: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(
                watermarks.update()
                .where(watermarks.c.job == job, watermarks.c.name == name)
                .values(value=value, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(watermarks.insert().values(job=job, name=name, value=value, updated_at=now))

    def record_action(
        self,
        job: str,
        *,
        action: str,
        resource_id: str,
        scope: str,
        dry_run: bool,
        outcome: str,
        detail: str | Mapping[str, Any] = "",
        flow_run_id: str | None = None,
        now: datetime | None = None,
    ) -> None:
        if not isinstance(detail, str):
            detail = json.dumps(detail, default=str, sort_keys=True)
        with self.engine.begin() as conn:
            conn.execute(
                actions.insert().values(
                    job=job, action=action, resource_id=resource_id, scope=scope,
                    dry_run=dry_run, outcome=outcome, detail=detail, flow_run_id=flow_run_id,
                    ts=now or datetime.now(timezone.utc),
                )
            )

    # --- outbox: chat messages waiting for delivery -----------------------------------

    def enqueue_message(self, subject: str, body: str, refused: str | None = None) -> int:
        """Keep a message for later delivery, or (`refused`: why) as undeliverable; its id."""
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            message_id = conn.execute(outbox.insert().values(
                subject=subject, body=body, created_at=now, attempts=0,
                refused_at=now if refused else None, error=refused)).inserted_primary_key[0]
            if refused:
                self._take_back(conn, subject, body)
        return message_id

    def claim_pending_messages(self, limit: int = 50) -> list[tuple[int, str, str]]:
        """Pending messages, oldest first, each claimed so that no concurrent sender sends it too."""
        now = datetime.now(timezone.utc)
        unclaimed = outbox.c.claimed_at.is_(None) | (outbox.c.claimed_at < now - CLAIM_TIMEOUT)
        pending = _PENDING & unclaimed
        claimed = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(outbox.c.id, outbox.c.subject, outbox.c.body)
                .where(pending).order_by(outbox.c.id).limit(limit)).all()
            for row in rows:
                won = conn.execute(
                    outbox.update().where(outbox.c.id == row.id, pending)
                    .values(claimed_at=now, attempts=outbox.c.attempts + 1)).rowcount
                if won:
                    claimed.append((row.id, row.subject, row.body))
        return claimed

    def release_messages(self, message_ids: Sequence[int]) -> None:
        """Give claimed messages back at once, so the next sender need not wait for the claim timeout."""
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id.in_(message_ids)).values(claimed_at=None))

    def mark_message_delivered(self, message_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == message_id)
                         .values(delivered_at=datetime.now(timezone.utc)))

    def mark_message_refused(self, message_id: int, error: str) -> None:
        """Google Chat will never take this message: keep it as undeliverable, and if it was a
        digest, make its findings due for announcement again."""
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == message_id)
                         .values(refused_at=datetime.now(timezone.utc), error=error))
            row = conn.execute(sa.select(outbox.c.subject, outbox.c.body)
                               .where(outbox.c.id == message_id)).one()
            self._take_back(conn, row.subject, row.body)

    def unsurfaced_refusals(self) -> list[tuple[int, str, str]]:
        """Refused messages not yet told in chat: (id, subject, error), oldest first."""
        query = (sa.select(outbox.c.id, outbox.c.subject, outbox.c.error)
                 .where(outbox.c.refused_at.is_not(None), outbox.c.surfaced_at.is_(None))
                 .order_by(outbox.c.id))
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query)]

    def mark_refusals_surfaced(self, message_ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id.in_(message_ids))
                         .values(surfaced_at=datetime.now(timezone.utc)))

    def pending_message_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(outbox)
                                .where(_PENDING)).scalar_one()

    def record_announcement(
        self, job: str, subject: str, body: str, transitions: Transitions, now: datetime
    ) -> None:
        """Remember which findings the digest (`subject`, `body`) announces (see `_take_back`)."""
        with self.engine.begin() as conn:
            conn.execute(announcements.delete().where(
                announcements.c.created_at < now - ANNOUNCEMENT_RETENTION))
            conn.execute(announcements.insert().values(
                job=job, message=message_key(subject, body), created_at=now,
                announced=[f.key for f in transitions.to_announce],
                resolved=list(transitions.resolved)))

    @staticmethod
    def _take_back(conn: sa.Connection, subject: str, body: str) -> None:
        """A digest was refused: its findings count as never announced, so the job's next run
        announces them again (open ones as reminders, resolved ones as resolved)."""
        for a in conn.execute(sa.select(announcements).where(
                announcements.c.message == message_key(subject, body))).all():
            mine = findings.c.job == a.job
            if a.announced:
                conn.execute(findings.update().where(
                    mine, findings.c.key.in_(a.announced), findings.c.status == "open"
                ).values(last_alerted=None))
            if a.resolved:
                conn.execute(findings.update().where(
                    mine, findings.c.key.in_(a.resolved), findings.c.status == "resolved"
                ).values(status="open", resolved_at=None, last_alerted=None))
            conn.execute(announcements.delete().where(announcements.c.id == a.id))

    def actions_of(self, job: str) -> list[dict[str, Any]]:
        query = sa.select(actions).where(actions.c.job == job).order_by(actions.c.id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def applied_actions(self, since: datetime) -> list[dict[str, Any]]:
        """Changes made (outcome `done`, not a dry run) since `since`, by every job, each with the
        kind and $/month of the finding it acted on (same job and resource) when the store has it."""
        acted_on = sa.and_(findings.c.job == actions.c.job, findings.c.resource_id == actions.c.resource_id)
        query = (sa.select(actions.c.id, actions.c.job, actions.c.action, actions.c.resource_id, actions.c.scope,
                           actions.c.ts, findings.c.kind, findings.c.monthly_cost_usd)
                 .select_from(actions.outerjoin(findings, acted_on))
                 .where(actions.c.outcome == "done", actions.c.dry_run.is_(False), actions.c.ts >= since)
                 .order_by(actions.c.ts, actions.c.id))
        with self.engine.connect() as conn:
            rows = {r["id"]: dict(r) for r in conn.execute(query).mappings()}  # one per action
        for r in rows.values():
            r["ts"] = _utc(r["ts"])
        return list(rows.values())


def load_store(name: OpsStore | str) -> OpsStore:
    """Load (unless given the block) and check the store block, or fail saying how to fix it."""
    from blocks.loading import load_block

    store = load_block(OpsStore, name, "store")
    store.check()
    return store
