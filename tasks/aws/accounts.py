"""Which accounts and regions a multi-account sweep covers."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.aws.clients import Account, enabled_regions
from tasks.aws.permissions import requires


@task(name="resolve-account", cache_policy=NO_CACHE)
@requires("sts:GetCallerIdentity", "sts:AssumeRole", "ec2:DescribeRegions")
def resolve_account(account: Account, regions: list[str] | None) -> tuple[str, list[str]]:
    """The account id (assuming the role if any) and the regions to sweep in it.

    Building the session here, once, means the collect tasks that share this `Account` in
    threads never race to assume the role.
    """
    account_id = account.account_id
    return account_id, list(regions) if regions else enabled_regions(account)
