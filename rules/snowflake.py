"""What every Snowflake job shares: account identifiers, warehouse sizes, prices, access problems.

Pure. Billing facts applied here (Snowflake's "Understanding compute cost"):
- a standard warehouse bills 1 credit per hour at X-Small, doubling with each size up to 512 at
  6X-Large; Snowpark-optimized warehouses bill 1.5 times that; billing is per second;
- cloud services credits are billed only for the part of a UTC day's cloud services above 10 % of
  that day's warehouse compute credits;
- the price of a credit depends on edition, cloud and region (and the contract): it is a policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from rules.config import ConfigError, JobPolicy
from rules.findings import Finding, Severity

# Credits per hour of one cluster, by the size names SHOW WAREHOUSES and QUERY_HISTORY use
# (normalised: upper case, no dashes or spaces).
CREDITS_PER_HOUR = {
    "XSMALL": 1, "SMALL": 2, "MEDIUM": 4, "LARGE": 8, "XLARGE": 16, "2XLARGE": 32, "XXLARGE": 32,
    "3XLARGE": 64, "XXXLARGE": 64, "4XLARGE": 128, "5XLARGE": 256, "6XLARGE": 512,
}
SNOWPARK_FACTOR = 1.5
CLOUD_SERVICES_FREE_SHARE = 0.10
HOURS_PER_MONTH = 730
ACCOUNT_USAGE = "SNOWFLAKE.ACCOUNT_USAGE"

# orgname-accountname (preferred) or a legacy locator, optionally with region and cloud.
_ORG_ACCOUNT = re.compile(r"^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9_]+$")
_LOCATOR = re.compile(r"^[A-Za-z]{2,}[0-9]+(\.[a-z][a-z0-9-]*[a-z0-9])?(\.(aws|azure|gcp))?$")


def normal_size(size: str | None) -> str:
    return re.sub(r"[-_ ]", "", (size or "").upper())


def credits_per_hour(size: str | None, warehouse_type: str = "STANDARD") -> float | None:
    """Credits one cluster of this size bills per hour; None for a size we do not know."""
    per_hour = CREDITS_PER_HOUR.get(normal_size(size))
    if per_hour is None:
        return None
    return per_hour * (SNOWPARK_FACTOR if "SNOWPARK" in (warehouse_type or "").upper() else 1)


def smaller_size(size: str) -> str | None:
    """The next size down, in SHOW WAREHOUSES spelling; None for X-Small or an unknown size."""
    order = ["X-Small", "Small", "Medium", "Large", "X-Large", "2X-Large", "3X-Large", "4X-Large",
             "5X-Large", "6X-Large"]
    names = {normal_size(n): i for i, n in enumerate(order)} | {"XXLARGE": 5, "XXXLARGE": 6}
    index = names.get(normal_size(size))
    return order[index - 1] if index else None


def billed_cloud_services(compute_credits: float, cloud_services_credits: float) -> float:
    """Cloud services credits billed for one UTC day: only what exceeds 10 % of its compute."""
    return max(0.0, cloud_services_credits - CLOUD_SERVICES_FREE_SHARE * compute_credits)


class SnowflakePricing(BaseModel):
    """What a credit costs; editions, clouds, regions and contracts differ."""

    model_config = ConfigDict(extra="forbid")

    price_per_credit_usd: float = Field(
        default=3.0, gt=0,
        description="USD per credit (on-demand list: Standard 2.00, Enterprise 3.00, Business "
                    "Critical 4.00 in AWS US East; other regions and contracts differ).",
    )
    account_prices_usd: dict[str, float] = Field(
        default_factory=dict,
        description="USD per credit for particular accounts (by account identifier), when they differ.",
    )

    def price(self, account: str) -> float:
        return self.account_prices_usd.get(account, self.price_per_credit_usd)


class SnowflakePolicy(JobPolicy):
    """Fields every Snowflake job's policy has."""

    login_timeout_seconds: int = Field(
        default=60, ge=1, le=600, description="How long to try to log in to an account before giving up on it.",
    )


def account_scope(account: str) -> str:
    """Where a Snowflake finding lives: the account identifier, lower case."""
    return account.strip().lower()


def check_account_identifier(account: str, block: str) -> None:
    """Reject what is plainly not an account identifier, before any connection is tried."""
    hint = ("use `orgname-accountname` (Admin > Accounts, e.g. `acme-prod`) or a locator with "
            "its region, e.g. `xy12345.eu-west-1` or `xy12345.us-east-2.aws`")
    where = f"SnowflakeCredentials `account` of the connector block {block!r}"
    value = account.strip()
    if "://" in value or "/" in value:
        raise ConfigError(f"{where} is {value!r}, a URL: give the identifier only; {hint}.")
    if value.lower().endswith((".snowflakecomputing.com", ".snowflakecomputing.com.")):
        raise ConfigError(f"{where} is {value!r}: drop `.snowflakecomputing.com`; {hint}.")
    if not (_ORG_ACCOUNT.match(value) or _LOCATOR.match(value)):
        raise ConfigError(f"{where} is {value!r}, not an account identifier: {hint}.")


def check_accounts(accounts: Iterable[str]) -> list[str]:
    """The connector block names, checked for presence and duplicates."""
    names = list(accounts)
    if not names:
        raise ConfigError("`accounts` is empty: list the names of SnowflakeConnector blocks, one per account.")
    if len(set(names)) != len(names):
        raise ConfigError(f"`accounts` names a block twice: {names}.")
    return names


# --- access problems: what failed, and the grant or fix that cures it ---------------------


@dataclass(frozen=True)
class AccessProblem:
    """Why an account (or one of its views) could not be read, for people."""

    kind: str  # snowflake-login-failed | snowflake-unreachable | snowflake-access-denied | snowflake-read-failed
    message: str


def access_problem(
    account: str, role: str | None, what: str, *, errno: int | None, sqlstate: str | None,
    message: str, error_type: str, grant: str = "",
) -> AccessProblem:
    """Classify a connector error (its errno, SQLSTATE and message) into a problem and its fix.

    `what` is what was being read (a view, a command, "login"); `grant` what the role needs for it.
    """
    role_text = f"role {role}" if role else "the user's default role"
    detail = message.strip().splitlines()[0] if message.strip() else error_type
    if errno in (390144, 390114, 390113) or "JWT token" in message:
        return AccessProblem("snowflake-login-failed", (
            f"account {account}: key-pair login refused ({detail}): the user's RSA_PUBLIC_KEY no "
            "longer matches the block's private key (rotated or expired key): register the new "
            "public key with ALTER USER ... SET RSA_PUBLIC_KEY, or update the block's private_key."))
    if errno in (390100, 390101, 390102, 390103, 390104, 390318) or (sqlstate or "").startswith("28"):
        return AccessProblem("snowflake-login-failed", (
            f"account {account}: login refused ({detail}): check the user and credentials of the "
            "SnowflakeCredentials block (user locked or disabled, wrong password, expired key)."))
    if errno in (250001, 250003, 251012) or error_type in ("OperationalError", "InterfaceError"):
        return AccessProblem("snowflake-unreachable", (
            f"account {account}: could not connect ({detail}): check the block's `account` "
            "identifier (orgname-accountname, or locator.region.cloud) and the network path to "
            "<account>.snowflakecomputing.com (proxy, PrivateLink)."))
    if errno == 606 or "No active warehouse" in message:
        return AccessProblem("snowflake-access-denied", (
            f"account {account}: no usable warehouse for {what} ({detail}): set the connector "
            f"block's `warehouse` and GRANT USAGE ON WAREHOUSE <warehouse> TO ROLE {role or '<role>'}."))
    if errno in (2003, 2043, 3001, 3003) or sqlstate in ("02000", "42S02", "42501"):
        fix = f"GRANT {grant} TO ROLE {role or '<role>'}" if grant else f"grant {role_text} access to it"
        return AccessProblem("snowflake-access-denied", (
            f"account {account}: {role_text} cannot read {what} ({detail}): {fix}."))
    return AccessProblem("snowflake-read-failed", f"account {account}: reading {what} failed: {detail}")


def access_findings(scope: str, problems: Iterable[AccessProblem]) -> list[Finding]:
    """One critical finding per kind of problem an account had this run: the job could not look."""
    by_kind: dict[str, list[str]] = {}
    for p in problems:
        by_kind.setdefault(p.kind, []).append(p.message)
    return [
        Finding(kind=kind, resource_id=scope, scope=scope, severity=Severity.CRITICAL,
                reason=" ".join(dict.fromkeys(messages)), numbers={"problems": len(messages)})
        for kind, messages in sorted(by_kind.items())
    ]


ACCESS_KINDS = frozenset({"snowflake-login-failed", "snowflake-unreachable",
                          "snowflake-access-denied", "snowflake-read-failed"})
