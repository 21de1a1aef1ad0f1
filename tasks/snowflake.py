"""Reach Snowflake accounts through prefect-snowflake's `SnowflakeConnector` blocks.

One connection per account and run; every read names the grant it needs (`@grants`, read by
`deployments/snowflake_grants.py` for the least-privilege role), and a failed read becomes an
`AccessProblem` naming that grant, so one account or view failing never sinks the others.

Commands fakesnow cannot run (SHOW WAREHOUSES beyond its one fixed row, SHOW RESOURCE MONITORS,
the INFORMATION_SCHEMA.QUERY_HISTORY table function, SYSTEM$CANCEL_QUERY) go through
`SnowflakeSession.command`: against a `fakesnow://` endpoint (tests, the demo) each is answered
from a table with the command's documented columns (`STAND_IN` below); against Snowflake it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from prefect_snowflake import SnowflakeConnector
from pydantic import ValidationError
from snowflake.connector import DictCursor
from snowflake.connector.errors import Error as SnowflakeError

from blocks.loading import load_block, validation_message
from rules.config import ConfigError
from rules.findings import Coverage
from rules.snowflake import AccessProblem, access_problem, account_scope, check_account_identifier

F = TypeVar("F", bound=Callable[..., Any])
QUERY_TAG = "dataplatform-ops"  # our own queries carry it, so the watches can leave them out

# Grants, by what they open (Snowflake's "SNOWFLAKE database roles" table).
USAGE_VIEWER = "DATABASE ROLE SNOWFLAKE.USAGE_VIEWER"
GOVERNANCE_VIEWER = "DATABASE ROLE SNOWFLAKE.GOVERNANCE_VIEWER"
SECURITY_VIEWER = "DATABASE ROLE SNOWFLAKE.SECURITY_VIEWER"
MONITOR_WAREHOUSES = "MONITOR ON WAREHOUSE <each warehouse>"  # SHOW WAREHOUSES, live query history
OPERATE_WAREHOUSES = "OPERATE ON WAREHOUSE <each warehouse>"  # SYSTEM$CANCEL_QUERY of others' queries
USE_WAREHOUSE = "USAGE ON WAREHOUSE <the connector block's warehouse>"

# fakesnow stand-ins: command -> table with the command's output columns (see module docstring).
STAND_IN = {
    "SHOW WAREHOUSES": "STAND_IN.PUBLIC.SHOW_WAREHOUSES",
    "SHOW RESOURCE MONITORS": "STAND_IN.PUBLIC.SHOW_RESOURCE_MONITORS",
    "LIVE QUERY HISTORY": "STAND_IN.PUBLIC.QUERY_HISTORY_LIVE",
    "CANCEL QUERY": "STAND_IN.PUBLIC.CANCELLED_QUERIES",
}
LIVE_QUERY_HISTORY_SQL = """
SELECT query_id, query_text, user_name, role_name, warehouse_name, warehouse_size,
       execution_status, start_time, total_elapsed_time, transaction_blocked_time, query_tag
FROM TABLE(SNOWFLAKE.INFORMATION_SCHEMA.QUERY_HISTORY(RESULT_LIMIT => 10000))
WHERE execution_status IN ('RUNNING', 'QUEUED', 'BLOCKED', 'RESUMING_WAREHOUSE')
"""


def grants(*needed: str, write: bool = False) -> Callable[[F], F]:
    """Mark a function with the Snowflake grants its role needs; put it under `@task`."""

    def mark(fn: F) -> F:
        fn.snowflake_grants = frozenset(needed)  # type: ignore[attr-defined]
        fn.snowflake_write = write  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(frozen=True)
class SnowflakeAccount:
    """One account to read: its connector block, and where to reach it."""

    block: str
    connector: SnowflakeConnector
    endpoint: str | None = None  # https://… (PrivateLink) or fakesnow://host:port (tests, demo)

    @property
    def account(self) -> str:
        return self.connector.credentials.account

    @property
    def scope(self) -> str:
        return account_scope(self.account)

    @property
    def role(self) -> str | None:
        return self.connector.credentials.role

    @property
    def emulated(self) -> bool:
        return bool(self.endpoint) and self.endpoint.startswith("fakesnow://")


def snowflake_accounts(blocks: Sequence[str], endpoints: Mapping[str, str] | None = None,
                       parameter: str = "accounts") -> list[SnowflakeAccount]:
    """Load and check every account's connector block before any query: bad input names the fix.

    `parameter` is where the block names came from, for the messages."""
    endpoints = dict(endpoints or {})
    unknown = set(endpoints) - set(blocks)
    if unknown:
        raise ConfigError(f"`endpoints` names {sorted(unknown)}, which are not in `{parameter}` {list(blocks)}.")
    found = []
    for block in blocks:
        try:
            connector = load_block(SnowflakeConnector, block, parameter)
        except ValidationError as exc:
            raise ConfigError(f"SnowflakeConnector block {block!r} (parameter `{parameter}`): "
                              f"{validation_message(exc)}") from None
        check_account_identifier(connector.credentials.account, block)
        endpoint = endpoints.get(block)
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("https", "http", "fakesnow") or not parts.hostname:
                raise ConfigError(f"`endpoints` for {block!r}: {endpoint!r} is not a URL like "
                                  "https://<account>.privatelink.snowflakecomputing.com.")
        found.append(SnowflakeAccount(block, connector, endpoint))
    scopes = [a.scope for a in found]
    if len(set(scopes)) != len(scopes):
        raise ConfigError(f"`{parameter}`: two blocks point at the same account ({scopes}); list each account once.")
    return found


def connect_kwargs(account: SnowflakeAccount, login_timeout: int) -> dict[str, Any]:
    """What `SnowflakeConnector.get_connection` gets besides the block's own settings."""
    kwargs: dict[str, Any] = {"login_timeout": login_timeout,
                              "session_parameters": {"QUERY_TAG": QUERY_TAG, "TIMEZONE": "UTC"}}
    if account.endpoint:
        parts = urlsplit(account.endpoint)
        emulated = parts.scheme == "fakesnow"
        kwargs |= {"host": parts.hostname, "protocol": "http" if emulated else parts.scheme,
                   "port": parts.port or (80 if parts.scheme == "http" else 443)}
        if emulated:  # fakesnow answers an unsupported statement with a 500: fail, do not retry for minutes
            kwargs["network_timeout"] = 30
            kwargs["session_parameters"]["CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED"] = False
    return kwargs


class SnowflakeSession:
    """One open connection to one account: rows as dicts with lower-case keys."""

    def __init__(self, account: SnowflakeAccount, connection: Any):
        self.account = account
        self._connection = connection

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._connection.cursor(DictCursor) as cursor:
            cursor.execute(sql, dict(params or {}))
            return [{k.lower(): v for k, v in row.items()} for row in cursor.fetchall()]

    def command(self, name: str) -> list[dict[str, Any]]:
        """A SHOW command or the live query history (see the module docstring)."""
        if self.account.emulated:
            return self.rows(f"SELECT * FROM {STAND_IN[name]}")
        if name == "LIVE QUERY HISTORY":
            return self.rows(LIVE_QUERY_HISTORY_SQL)
        return self.rows(name)

    def cancel_query(self, query_id: str) -> str:
        """SYSTEM$CANCEL_QUERY: Snowflake's answer, as text."""
        if self.account.emulated:
            self.rows(f"INSERT INTO {STAND_IN['CANCEL QUERY']} (query_id) VALUES (%(q)s)", {"q": query_id})
            return f"query [{query_id}] terminated."
        [row] = self.rows("SELECT SYSTEM$CANCEL_QUERY(%(q)s) AS outcome", {"q": query_id})
        return str(row["outcome"])


@dataclass
class AccountRead:
    """What one job read from one account: data per read, and what could not be read."""

    account: str  # the scope: account identifier, lower case
    data: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, AccessProblem] = field(default_factory=dict)  # read name -> problem
    connected: bool = False

    def ok(self, name: str) -> bool:
        return name in self.data


def problem_of(exc: BaseException, account: SnowflakeAccount, what: str, grant: str = "") -> AccessProblem:
    """A failed login or read, classified with the grant or fix it needs (secrets never included)."""
    if isinstance(exc, SnowflakeError):
        return access_problem(account.account, account.role, what, errno=exc.errno, sqlstate=exc.sqlstate,
                              message=exc.msg or "", error_type=type(exc).__name__, grant=grant)
    # The block could not even build a login: a key it cannot read or decrypt, a missing file.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "password" in text.lower() or "decrypt" in text.lower() or "Pem" in type(exc).__name__:
        text = (f"the block's private key could not be used ({type(exc).__name__}: {text}): check "
                "private_key (PEM) and private_key_passphrase")
    return AccessProblem("snowflake-login-failed", f"account {account.account}: login not attempted: {text}.")


@contextmanager
def open_session(account: SnowflakeAccount, login_timeout: int, read: AccountRead) -> Iterator[SnowflakeSession | None]:
    """A session, or None with the login problem recorded in `read`."""
    try:
        connection = account.connector.get_connection(**connect_kwargs(account, login_timeout))
    except (SnowflakeError, ValueError, TypeError, OSError) as exc:
        read.problems["login"] = problem_of(exc, account, "login")
        yield None
        return
    read.connected = True
    try:
        yield SnowflakeSession(account, connection)
    finally:
        account.connector.close()


def read_into(read: AccountRead, name: str, what: str, grant: str, fetch: Callable[[], Any],
              account: SnowflakeAccount) -> bool:
    """Run one read; its data, or its problem naming `grant`, lands in `read`."""
    try:
        read.data[name] = fetch()
    except SnowflakeError as exc:
        read.problems[name] = problem_of(exc, account, what, grant)
        return False
    return True


def coverage_of(reads: Sequence[AccountRead], kinds_of: Mapping[str, set[str]]) -> Coverage:
    """Each account read. A failed login, or a read missing from `kinds_of`, hides the whole
    account; a read listed there hides only its finding kinds (none: the job did without it)."""
    coverage = Coverage()
    for r in reads:
        coverage.mark_read(r.account)
        for name, problem in r.problems.items():
            if name == "login" or name not in kinds_of:
                coverage.fail(r.account, problem.message)
            elif kinds_of[name]:
                coverage.fail(r.account, problem.message, kinds_of[name])
    return coverage
