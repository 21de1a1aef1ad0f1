"""The one way to build AWS clients and page through AWS APIs.

Clients come from a prefect-aws `AwsCredentials` block (optionally assuming a role per
account) with adaptive retries for `Throttling` / `RequestLimitExceeded`. `paginate`
counts pages so a run can report its API work and stop at a page budget.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.loaders
from botocore.config import Config
from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect_aws import AwsCredentials

from rules.config import Explained
from rules.text import truncate
from tasks.aws.permissions import requires

# Throttling is retried with adaptive backoff; an endpoint that accepts and never answers costs
# at most `read_timeout` per attempt, and `deadline` bounds the attempts of one target.
RETRY_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=5, read_timeout=15)
_DEADLINE: contextvars.ContextVar[tuple[float, float, str] | None] = contextvars.ContextVar(
    "aws_deadline", default=None)
# Set when the run that started these calls is leaving (cancelled): see `stop_on_exit`.
_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("aws_stop", default=None)
log = logging.getLogger(__name__)


class NoAnswer(Explained):
    """A target's AWS endpoint did not answer within its time budget."""


@contextmanager
def deadline(seconds: float, where: str) -> Iterator[None]:
    """Bound every AWS call made in this block (this thread): once `seconds` have passed, the
    next attempt raises `NoAnswer` instead of waiting another read timeout."""
    token = _DEADLINE.set((time.monotonic(), seconds, where))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@contextmanager
def stop_on_exit() -> Iterator[None]:
    """Leaving this block by an exception (the runner's SIGTERM when a run is cancelled) stops
    the AWS calls its task threads still make, at their next attempt. Otherwise the process
    waits for those threads at exit (Python joins pool threads) until their own deadline,
    longer than the runner's grace before it kills the run."""
    stop = threading.Event()
    token = _STOP.set(stop)  # task threads run in a copy of this context: they share `stop`
    try:
        yield
    except BaseException:
        stop.set()
        raise
    finally:
        _STOP.reset(token)


def _check_deadline(**_: Any) -> None:
    stop = _STOP.get()
    if stop is not None and stop.is_set():
        raise NoAnswer("the run was stopped")
    bound = _DEADLINE.get()
    if bound is None:
        return
    started, seconds, where = bound
    waited = time.monotonic() - started
    if waited >= seconds:
        raise NoAnswer(f"no answer in {seconds:.0f} s")
    if waited >= RETRY_CONFIG.read_timeout:  # a person watching the run sees why it waits
        try:
            logger = get_run_logger()
        except MissingContextError:
            logger = log
        logger.warning("%s: AWS has not answered for %.0f s; giving up at %.0f s", where, waited, seconds)


class _Shared:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # boto3 clients are thread-safe; building them is not
        self.made: dict[tuple[int, str, str | None, Config | None], tuple[Account, Any]] = {}


_SHARED: contextvars.ContextVar[_Shared | None] = contextvars.ContextVar("aws_clients", default=None)


@contextmanager
def shared_clients() -> Iterator[None]:
    """In this block (and the task threads it starts) `Account.client` builds one client per
    account x service x region and reuses it. Building one costs ~20-60 ms of CPU and ~1.4 MB
    (botocore makes a class per client) and a target lists several things; the clients are
    dropped at the end, so a sweep of hundreds of targets does not hold them all."""
    token = _SHARED.set(_Shared())
    try:
        yield
    finally:
        _SHARED.reset(token)


# Every boto3 session parses its own copy of the AWS API models (about 24 MB and 0.3 s for EC2):
# with one session per account, memory grew with accounts. One loader serves them all.
_MODELS = botocore.loaders.create_loader()


def _sharing_models(session: boto3.Session) -> boto3.Session:
    session._session.register_component("data_loader", _MODELS)
    return session


@dataclass
class Account:
    """One AWS account to work in: the credentials' own, or a role assumed from them."""

    credentials: AwsCredentials
    role_arn: str | None = None
    _session: boto3.Session | None = field(default=None, repr=False)

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            base = _sharing_models(self.credentials.get_boto3_session())
            if self.role_arn:
                sts = base.client("sts", **self._client_kwargs())
                creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="dataplatform-ops")[
                    "Credentials"
                ]
                base = _sharing_models(boto3.Session(
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"],
                    region_name=base.region_name,
                ))
            self._session = base
        return self._session

    def __getstate__(self) -> dict[str, Any]:
        # A boto3 session cannot be pickled; Prefect pickles task inputs to compute cache keys.
        return {"credentials": self.credentials, "role_arn": self.role_arn, "_session": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _client_kwargs(self, config: Config | None = None) -> dict[str, Any]:
        """The block's client parameters; its botocore `config` (timeouts, retries) wins over
        ours (`config` or `RETRY_CONFIG`)."""
        params = self.credentials.aws_client_parameters.get_params_override()
        own = params.pop("config", None)
        ours = RETRY_CONFIG.merge(config) if config else RETRY_CONFIG
        return {**params, "config": ours.merge(own) if own else ours}

    def client(self, service: str, region: str | None = None, config: Config | None = None) -> Any:
        shared = _SHARED.get()
        if shared is None:
            return self._new_client(service, region, config)
        key = (id(self), service, region, config)
        with shared.lock:
            if key not in shared.made:  # the account rides along so its id is not reused meanwhile
                shared.made[key] = (self, self._new_client(service, region, config))
            return shared.made[key][1]

    def _new_client(self, service: str, region: str | None, config: Config | None) -> Any:
        kwargs = self._client_kwargs(config)
        if region:
            kwargs["region_name"] = region
        client = self.session.client(service, **kwargs)
        client.meta.events.register("before-send", _check_deadline)  # once per attempt
        return client

    @property
    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]


@dataclass
class PageCounter:
    """API pages read by a collect task; reported so work per run is visible."""

    pages: int = 0
    truncated: bool = False


def paginate(
    client: Any,
    operation: str,
    result_key: str,
    *,
    counter: PageCounter | None = None,
    max_pages: int | None = None,
    **kwargs: Any,
) -> Iterator[Any]:
    """Yield every item of `result_key` across the pages of `operation`.

    Stops after `max_pages` (marking `counter.truncated`) so a huge account cannot make
    one run unbounded. Operations without a paginator are read as a single page.
    """
    counter = counter if counter is not None else PageCounter()
    if client.can_paginate(operation):
        pages = client.get_paginator(operation).paginate(**kwargs)
    else:
        pages = iter([getattr(client, operation)(**kwargs)])
    for page in pages:
        if max_pages is not None and counter.pages >= max_pages:
            counter.truncated = True
            return
        counter.pages += 1
        yield from page.get(result_key, [])


@requires("ec2:DescribeRegions")
def enabled_regions(account: Account, service: str = "ec2") -> list[str]:
    """Regions enabled for the account (opt-in regions only when opted in)."""
    ec2 = account.client("ec2", account.session.region_name or "us-east-1")
    regions = ec2.describe_regions(
        Filters=[{"Name": "opt-in-status", "Values": ["opt-in-not-required", "opted-in"]}]
    )["Regions"]
    available = set(account.session.get_available_regions(service))
    return sorted(r["RegionName"] for r in regions if not available or r["RegionName"] in available)


# S3 refuses with a bare "Access Denied" that names no permission; most S3 permissions are named
# like their operation (s3:GetBucketTagging), these are not.
S3_PERMISSION_OF = {
    "ListBuckets": "s3:ListAllMyBuckets", "ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket", "HeadObject": "s3:GetObject",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "ListBucketInventoryConfigurations": "s3:GetInventoryConfiguration",
    "PutBucketIntelligentTieringConfiguration": "s3:PutIntelligentTieringConfiguration",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads", "ListParts": "s3:ListMultipartUploadParts",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock", "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "ListObjectVersions": "s3:ListBucketVersions",
}


def error_summary(exc: Exception) -> str:
    """A short, secret-free description of an AWS error for artifacts and messages; a denial
    names the missing IAM permission (the other services' messages already do)."""
    error = exc.response.get("Error", {}) if isinstance(getattr(exc, "response", None), dict) else {}
    code = error.get("Code")
    text = f"{code}: {exc}" if code else f"{type(exc).__name__}: {exc}"
    if code == "AccessDenied" and error.get("Message") == "Access Denied":
        operation = getattr(exc, "operation_name", "")
        text += f" (needs {S3_PERMISSION_OF.get(operation, f's3:{operation}')})"
    return truncate(" ".join(text.split()), 500)  # one line, even when a proxy answered with a page
