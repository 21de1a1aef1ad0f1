"""Every flow of the collection: named, failure-alerting, and listed in prefect.yaml."""

import importlib
import pkgutil

from prefect import Flow

import flows
from flows.registry import deployment_specs, load_flow
from tasks.notify import on_flow_failure


def collection_flows() -> list[Flow]:
    found = []
    for info in pkgutil.iter_modules(flows.__path__):
        module = importlib.import_module(f"flows.{info.name}")
        found += [v for v in vars(module).values() if isinstance(v, Flow) and v.__module__ == module.__name__]
    return found


def test_every_flow_alerts_on_failure_and_is_deployed():
    deployed = {load_flow(spec["entrypoint"]).name for spec in deployment_specs()}
    for fl in collection_flows():
        assert on_flow_failure in fl.on_failure_hooks, f"{fl.name}: add on_failure=[on_flow_failure]"
        assert fl.name in deployed, f"{fl.name}: add a deployment to prefect.yaml"


def test_every_deployment_parameters_validate_against_its_flow():
    for spec in deployment_specs():
        fl = load_flow(spec["entrypoint"])
        parameters = spec.get("parameters") or {}
        per_run = set(fl.parameters.required) - set(parameters)
        if per_run:  # given to each run by whoever starts it (an automation), never by a schedule
            assert not spec.get("schedules"), f"{spec['name']}: scheduled runs would lack {per_run}"
            assert set(parameters) <= set(fl.parameters.properties), spec["name"]
        else:
            fl.validate_parameters(parameters)
        assert "dataplatform-ops" in (spec.get("tags") or []), spec["name"]


def test_every_flow_module_is_a_registered_job():
    """prefect.yaml is the registry: a flow without a deployment entry is not a job yet."""
    from flows.registry import JOBS

    assert {f.name for f in collection_flows()} == set(JOBS), "add a deployment for the new flow to prefect.yaml"


# A report with no findings, and one-off events announced once ever: nothing to remind.
NEVER_REMINDED = {"bigquery-cost-report", "bigquery-query-cost-watch", "pipeline-failure-report", "aws-cost-report"}


def test_every_aws_job_means_the_same_by_regions_role_arns_apply_and_repeat():
    import inspect

    from flows.registry import JOBS

    for name, fl in JOBS.items():
        params = inspect.signature(fl.fn).parameters
        if name not in NEVER_REMINDED:
            assert "repeat_interval_hours" in str(fl.parameters.definitions), f"{name}: add repeat_interval_hours"
        if "aws_credentials" not in params or "warehouse" in params:
            continue  # not an account sweep
        assert params["regions"].default is None, f"{name}: `regions` unset must mean every enabled region"
        assert params["role_arns"].default is None, f"{name}: `role_arns` must add accounts"
        if "apply" in params:
            assert params["apply"].default is False, f"{name}: dry-run by default"
            assert "approval_timeout_seconds" in str(fl.parameters.definitions), name


def test_every_job_with_refresh_prices_refreshes_them_through_the_one_hook():
    from flows.registry import contracts
    from rules.config import PricedPolicy
    from tasks.aws.pricing import refreshed_prices

    for name, job in contracts().items():
        assert (job.prices is refreshed_prices) == issubclass(job.policy, PricedPolicy), name


def test_job_pages_are_generated_from_the_code():
    from deployments.docs import stale

    assert stale() == [], "run `uv run python -m deployments.docs` and commit docs/jobs/"
