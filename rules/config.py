"""Errors for bad input: they name the field and the fix, and are raised before any API call."""

import re

from pydantic import BaseModel, ConfigDict, Field

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


OPT_OUT_TAG = "dataplatform-ops:keep"


def opted_out(tags: dict[str, str], tag: str = OPT_OUT_TAG) -> bool:
    """Whether a resource carries the opt-out tag. Tag keys are case-sensitive in AWS, but
    `Dataplatform-Ops:Keep` plainly means the same: a resource is left alone on any spelling."""
    return tag.lower() in {key.lower() for key in tags}


class Explained(Exception):
    """An error whose message says all a person needs (what is wrong and the fix): the run's log
    shows it as one line, its traceback goes to the debug log (tasks/notify.py)."""


class ConfigError(Explained, ValueError):
    """A parameter, block or config file is wrong; the message says which and how to fix it."""


def validate_aws_targets(regions: list[str] | None, role_arns: list[str] | None) -> None:
    """Reject malformed regions or role ARNs before any API call (the same for every AWS job)."""
    for region in regions or []:
        if not _REGION.match(region):
            raise ConfigError(f"`regions`: {region!r} is not a region name (like `eu-west-1`).")
    if regions is not None and not regions:
        raise ConfigError("`regions` is empty: leave it unset for every enabled region, or list some.")
    for arn in role_arns or []:
        if not _ROLE_ARN.match(arn):
            raise ConfigError(
                f"`role_arns`: {arn!r} is not a role ARN (`arn:aws:iam::123456789012:role/name`)."
            )


class JobPolicy(BaseModel):
    """Fields every job's policy has, with one meaning everywhere."""

    model_config = ConfigDict(extra="forbid")

    repeat_interval_hours: float = Field(
        default=24, ge=1, description="Hours before a still-open finding is announced again."
    )


class ActingPolicy(JobPolicy):
    """A policy of a job that can change resources: how long a plan waits for a person."""

    approval_timeout_seconds: int = Field(
        default=3600, ge=10, le=7 * 86400,
        description="How long a run with apply=True waits for approval; nobody answering changes nothing.",
    )


class PricedPolicy(JobPolicy):
    """A policy of a job that puts $/month on AWS resources: where its prices come from."""

    refresh_prices: bool = Field(
        default=True, description="Refresh prices from the AWS Pricing API when allowed."
    )
