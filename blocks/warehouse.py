"""Connections to PostgreSQL-family warehouses: Redshift (provisioned, Serverless) and PostgreSQL."""

from __future__ import annotations

from typing import Literal

import psycopg
from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field, SecretStr, model_validator

from rules.config import ConfigError

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
        default=None, description="Provisioned cluster identifier, for IAM auth."
    )
    workgroup_name: str | None = Field(
        default=None, description="Serverless workgroup name, for IAM auth."
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

    def _credentials(self) -> tuple[str, str | None]:
        if not self.iam_auth:
            return self.user, self.password.get_secret_value() if self.password else None
        aws = self.aws_credentials or AwsCredentials()
        if self.dialect == "redshift":
            creds = aws.get_client("redshift").get_cluster_credentials(
                DbUser=self.user, DbName=self.database, ClusterIdentifier=self.cluster_identifier,
                AutoCreate=False,
            )
            return creds["DbUser"], creds["DbPassword"]
        creds = aws.get_client("redshift-serverless").get_credentials(
            workgroupName=self.workgroup_name, dbName=self.database
        )
        return creds["dbUser"], creds["dbPassword"]

    def connect(self, *, read_only: bool = True) -> psycopg.Connection:
        """Open a connection; raises `ConfigError` naming the endpoint when it cannot."""
        user, password = self._credentials()
        try:
            conn = psycopg.connect(
                host=self.host, port=self.port, dbname=self.database, user=user,
                password=password, sslmode=self.sslmode,
                connect_timeout=self.connect_timeout_seconds,
                application_name="dataplatform-ops", autocommit=True,
            )
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot connect to {self.label}: {reason}") from None
        conn.execute(f"SET statement_timeout TO {self.statement_timeout_seconds * 1000}")
        if read_only:
            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        return conn
