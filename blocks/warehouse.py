"""Connections to PostgreSQL-family warehouses: Redshift (provisioned, Serverless) and PostgreSQL."""

from __future__ import annotations

from typing import ClassVar, Literal

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field, SecretStr, model_validator

from rules.config import ConfigError
from rules.text import redact
from tasks.aws.clients import Account, error_summary

Dialect = Literal["postgres", "redshift", "redshift-serverless"]


class WarehouseConnection(Block):
    """A PostgreSQL, Redshift or Redshift Serverless database, with password or IAM auth.

    Our own monitoring queries run read-only with a short statement timeout, so they never
    become the long-running query they are looking for.

    Example:
        ```python
        from blocks.warehouse import WarehouseConnection

        with WarehouseConnection.load("analytics-redshift").connect() as conn:
            conn.execute("select 1")
        ```
    """

    # Read by deployments/iam.py like a `@requires` declaration: what IAM auth may call.
    aws_permissions: ClassVar[frozenset[str]] = frozenset(
        {"redshift:GetClusterCredentials", "redshift-serverless:GetCredentials"})
    aws_write: ClassVar[bool] = False

    _block_type_name = "Warehouse Connection"
    _block_type_slug = "warehouse-connection"
    _description = "PostgreSQL / Redshift / Redshift Serverless connection for dataplatform-ops."

    dialect: Dialect = Field(default="postgres", description="Which system views to use.")
    host: str = Field(description="Host name or address of the endpoint.")
    port: int = Field(default=5432, ge=1, le=65535, description="TCP port (Redshift: 5439).")
    database: str = Field(description="Database to connect to.")
    user: str = Field(description="Database user (with IAM auth: the user to get credentials for).")
    password: SecretStr | None = Field(default=None, description="Password; empty with IAM auth.")
    iam_auth: bool = Field(
        default=False,
        description="Get temporary credentials through GetClusterCredentials / GetCredentials.",
    )
    aws_credentials: AwsCredentials | None = Field(
        default=None, description="AWS credentials for IAM auth."
    )
    cluster_identifier: str | None = Field(
        default=None,
        description="Provisioned cluster identifier: for IAM auth and its CloudWatch metrics.",
    )
    workgroup_name: str | None = Field(
        default=None,
        description="Serverless workgroup name: for IAM auth and its CloudWatch metrics.",
    )
    region: str | None = Field(
        default=None,
        description="AWS region of the cluster or workgroup; the AWS credentials' region if empty.",
    )
    sslmode: str = Field(default="prefer", description="libpq sslmode, e.g. `require`.")
    statement_timeout_seconds: int = Field(
        default=30, ge=1, le=3600, description="Statement timeout for our own queries."
    )
    connect_timeout_seconds: int = Field(default=10, ge=1, le=300, description="Connect timeout.")

    @model_validator(mode="after")
    def _auth_is_complete(self) -> WarehouseConnection:
        if self.iam_auth:
            if self.dialect == "postgres":
                raise ValueError("iam_auth: only for the redshift dialects; use a password.")
            if self.dialect == "redshift" and not self.cluster_identifier:
                raise ValueError("cluster_identifier: required for IAM auth on a provisioned cluster.")
            if self.dialect == "redshift-serverless" and not self.workgroup_name:
                raise ValueError("workgroup_name: required for IAM auth on Redshift Serverless.")
        return self

    @property
    def label(self) -> str:
        """Where this connects, without credentials: for findings and messages."""
        return f"{self.dialect}://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def scope(self) -> str:
        """Where findings live: host, port and database (no user, so keys survive a new login)."""
        return f"{self.host}:{self.port}/{self.database}"

    @property
    def is_redshift(self) -> bool:
        return self.dialect != "postgres"

    def _credentials(self) -> tuple[str, str | None]:
        if not self.iam_auth:
            return self.user, self.password.get_secret_value() if self.password else None
        aws = self.aws_credentials or AwsCredentials()
        try:
            if self.dialect == "redshift":
                creds = Account(aws).client("redshift", self.region).get_cluster_credentials(
                    DbUser=self.user, DbName=self.database,
                    ClusterIdentifier=self.cluster_identifier, AutoCreate=False,
                )
                return creds["DbUser"], creds["DbPassword"]
            creds = Account(aws).client("redshift-serverless", self.region).get_credentials(
                workgroupName=self.workgroup_name, dbName=self.database
            )
            return creds["dbUser"], creds["dbPassword"]
        except (BotoCoreError, ClientError) as exc:
            raise WarehouseUnavailable(
                "iam",
                f"IAM auth for {self.label} failed ({error_summary(exc)}): check the block's "
                "`aws_credentials`, `cluster_identifier`/`workgroup_name` and `region`, and that "
                "the role may call redshift:GetClusterCredentials / redshift-serverless:GetCredentials.",
            ) from None

    def connect(self, *, read_only: bool = True) -> psycopg.Connection:
        """Open an autocommit connection, or raise `WarehouseUnavailable` saying what is wrong.

        Read-only: `conn.transaction()` blocks start with `BEGIN READ ONLY` on every dialect
        (psycopg's `read_only`; the monitoring tasks run each check in one), and on PostgreSQL
        the session default makes bare statements read-only too (Redshift documents
        SET SESSION CHARACTERISTICS as deprecated, so it is not relied on there). Our short
        statement timeout applies to everything. Parameters are bound client-side
        (`ClientCursor`), which every Redshift endpoint accepts.
        """
        user, password = self._credentials()
        try:
            conn = psycopg.connect(
                host=self.host, port=self.port, dbname=self.database, user=user,
                password=password or "", sslmode=self.sslmode,
                connect_timeout=self.connect_timeout_seconds,
                application_name="dataplatform-ops", autocommit=True,
                cursor_factory=psycopg.ClientCursor,
            )
        except psycopg.OperationalError as exc:
            raise _unavailable(self, exc) from None
        conn.read_only = read_only
        conn.execute(f"SET statement_timeout TO {self.statement_timeout_seconds * 1000}")
        if read_only and not self.is_redshift:
            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        return conn


class WarehouseUnavailable(ConfigError):
    """The warehouse could not be reached or refused us; `problem` says which.

    `problem` is `credentials` (wrong user or password), `unreachable` (host, port, network),
    `iam` (temporary credentials could not be had) or `other`.
    """

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


_AUTH_WORDS = ("password authentication failed", "authentication failed", "does not exist",
               "no password supplied", "no pg_hba.conf entry")
_NETWORK_WORDS = ("connection refused", "timeout expired", "could not translate host name",
                  "name or service not known", "no route to host", "network is unreachable",
                  "could not connect", "connection timed out", "temporary failure in name resolution")


def _unavailable(block: WarehouseConnection, exc: Exception) -> WarehouseUnavailable:
    text = " ".join(str(exc).split())
    reason = text.split("failed:")[-1].strip() if "failed:" in text else text
    reason = redact(reason or type(exc).__name__)
    lowered = text.lower()
    if "database" in lowered and "does not exist" in lowered:
        return WarehouseUnavailable(
            "other", f"{block.label}: {reason}: fix the block's `database`."
        )
    if any(w in lowered for w in _AUTH_WORDS):
        return WarehouseUnavailable(
            "credentials",
            f"{block.label} refused the login ({reason}): fix the block's `user` and `password` "
            "(or its IAM settings).",
        )
    if any(w in lowered for w in _NETWORK_WORDS):
        return WarehouseUnavailable(
            "unreachable",
            f"{block.label} is unreachable ({reason}): check the block's `host` and `port`, that "
            "the cluster is running, and the network path (security group, VPN).",
        )
    return WarehouseUnavailable("other", f"cannot connect to {block.label}: {reason}")
