"""The job contract, shown on real runs (moto, the Prefect server, automations, chat receiver):
nothing is resolved by a run that did not read its place, a run that read nothing fails with
its cause in chat, deployments with other targets keep their own findings, and a bug in a
rule fails the run instead of passing as "not covered"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import boto3
import pytest
from prefect import flow
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import BaseModel

import flows.queue_health as queue_module
from blocks.store import load_store
from flows.queue_health import JOB, queue_health
from rules.findings import Finding, Severity
from tasks.runner import Job, Judgement, RunResult, run_job
from tests.test_queue_health import make_queue

NOW = datetime.now(timezone.utc)


def plant_dlq(region: str, name: str) -> None:
    """A dead-letter queue holding a message: one `dlq-messages` finding in `region`."""
    sqs = boto3.client("sqs", region_name=region)
    dlq = make_queue(sqs, f"{name}-dlq")
    make_queue(sqs, name, dlq)
    sqs.send_message(QueueUrl=dlq, MessageBody="lost order")


def creds(**kwargs) -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(**kwargs).save(name)
    return name


def open_keys(store) -> set[tuple[str, str]]:
    return {(f["scope"], f["resource_id"]) for f in store.findings_of(JOB, "open")}


def test_deployments_with_other_regions_keep_their_own_findings(aws, store):
    plant_dlq("us-east-1", "orders")
    plant_dlq("eu-west-1", "billing")
    good = creds(region_name="us-east-1")
    queue_health(regions=["us-east-1"], aws_credentials=good, store=store._block_document_name, now=NOW)
    queue_health(regions=["eu-west-1"], aws_credentials=good, store=store._block_document_name, now=NOW)
    both = {("123456789012/us-east-1", "orders-dlq"), ("123456789012/eu-west-1", "billing-dlq")}
    assert open_keys(store) == both
    # The us-east-1 deployment runs again: the eu-west-1 finding is not its to resolve.
    queue_health(regions=["us-east-1"], aws_credentials=good, store=store._block_document_name, now=NOW)
    assert open_keys(store) == both and store.findings_of(JOB, "resolved") == []


def test_unset_regions_mean_every_enabled_region(aws, store):
    plant_dlq("ap-northeast-2", "seoul")
    result = queue_health(aws_credentials=creds(region_name="us-east-1"), store=store._block_document_name,
                          now=NOW)
    assert {(f.scope, f.resource_id) for f in result.findings} == {("123456789012/ap-northeast-2", "seoul-dlq")}


def test_a_block_without_region_still_reads_every_region(aws, store, monkeypatch):
    plant_dlq("us-east-1", "orders")
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # a block saved without a region, none in the environment
    result = queue_health(aws_credentials=creds(), store=store._block_document_name, now=NOW)
    assert result.errors == {} and open_keys(store) == {("123456789012/us-east-1", "orders-dlq")}


def test_an_account_that_cannot_be_read_resolves_nothing_and_fails_once_in_chat(aws, store, routed):
    plant_dlq("us-east-1", "orders")
    queue_health(regions=["us-east-1"], aws_credentials=creds(region_name="us-east-1"),
                 store=store._block_document_name, now=NOW)
    assert open_keys(store) == {("123456789012/us-east-1", "orders-dlq")}
    routed.wait_for(1, timeout=120)  # the finding's own message (a busy server is slow)

    # Nothing listens there: every call fails to connect (an endpoint down, a VPC endpoint gone).
    bad = creds(region_name="us-east-1", aws_client_parameters=AwsClientParameters(
        endpoint_url="http://127.0.0.1:9", config={"retries": {"max_attempts": 1}}))
    state = queue_health(aws_credentials=bad, store=store._block_document_name, now=NOW, return_state=True)

    assert state.is_failed() and "could not read anything" in state.message
    assert open_keys(store) == {("123456789012/us-east-1", "orders-dlq")}  # nothing "resolved"
    messages = routed.wait_for(2, timeout=120)
    assert len(messages) == 2 and "resolved" not in messages[1].text.lower()
    assert "could not read anything" in messages[1].text and "credentials' account" in messages[1].text


def test_a_rule_that_raises_fails_the_run_with_its_traceback(aws, store, routed, monkeypatch):
    plant_dlq("us-east-1", "orders")

    def broken_rule(*args, **kwargs):  # stands for a bug in a rule: none exists to run here
        raise ZeroDivisionError("division by zero in the backlog rule")

    monkeypatch.setattr(queue_module, "judge_queues", broken_rule)
    state = queue_health(regions=["us-east-1"], aws_credentials=creds(region_name="us-east-1"),
                         store=store._block_document_name, now=NOW, return_state=True)
    assert state.is_failed() and "ZeroDivisionError" in state.message
    [alert] = routed.wait_for(1, timeout=120)
    assert "ZeroDivisionError" in alert.text and "broken_rule" in alert.text  # the traceback's frame
    assert store.findings_of(JOB, "open") == []  # the run judged nothing: it stored nothing either


def test_the_opt_out_tag_is_honoured_in_any_spelling():
    from rules.config import opted_out

    assert opted_out({"Dataplatform-Ops:Keep": ""}) and opted_out({"dataplatform-ops:keep": "yes"})
    assert not opted_out({"keep": "true"}) and opted_out({"Team:Hold": "1"}, "team:hold")


def test_a_block_of_the_wrong_type_names_both_types(store):
    from blocks.loading import load_block
    from rules.config import ConfigError

    with pytest.raises(ConfigError, match="has type Ops Store, not AWS Credentials: give the name of a block of that type"):
        load_block(AwsCredentials, store._block_document_name, "aws_credentials")


# --- run_job: the same contract over targets that are not AWS (a warehouse, a Snowflake account) --

class WatchPolicy(BaseModel):
    repeat_interval_hours: int = 24
    approval_timeout_seconds: int = 60


@dataclass(frozen=True)
class Warehouse:
    name: str
    reachable: bool = True

    @property
    def scope(self) -> str:
        return f"warehouse/{self.name}"


def _read_warehouse(target: Warehouse, policy: WatchPolicy, ctx) -> list[str]:
    if not target.reachable:
        raise ConnectionError(f"{target.name}: connection refused")
    return ctx.options["queries"][target.name]


def _judge_warehouse(target: Warehouse, queries: list[str], policy: WatchPolicy, ctx) -> Judgement:
    return Judgement(findings=[Finding(kind="long-query", resource_id=q, scope="anything",
                                       severity=Severity.WARNING, reason=f"{q} runs long") for q in queries])


WATCH = Job(name="contract-warehouse-watch", policy=WatchPolicy, collect=_read_warehouse, judge=_judge_warehouse)


@flow(name="contract-warehouse-watch")
def warehouse_watch(reachable: dict[str, bool], queries: dict[str, list[str]], store: str) -> RunResult:
    warehouses = [Warehouse(name, up) for name, up in reachable.items()]
    return run_job(WATCH, {}, lambda coverage: warehouses, store=load_store(store), options={"queries": queries})


def test_run_job_gives_other_targets_the_same_coverage(store):
    name = store._block_document_name
    first = warehouse_watch({"etl": True, "bi": True}, {"etl": ["q1"], "bi": ["q2"]}, name)
    assert {(f.scope, f.resource_id) for f in first.findings} == {("warehouse/etl", "q1"), ("warehouse/bi", "q2")}
    # bi cannot be reached and etl's query ended: only etl's finding resolves; bi's stays open.
    second = warehouse_watch({"etl": True, "bi": False}, {"etl": [], "bi": []}, name)
    assert second.errors == {"warehouse/bi": "ConnectionError: bi: connection refused"}
    assert {f["resource_id"] for f in store.findings_of(WATCH.name, "resolved")} == {"q1"}
    assert {f["resource_id"] for f in store.findings_of(WATCH.name, "open")} == {"q2"}
    # Nothing readable: the run fails instead of reporting an all-clear.
    state = warehouse_watch({"bi": False}, {"bi": []}, name, return_state=True)
    assert state.is_failed() and "could not read anything" in state.message
    assert {f["resource_id"] for f in store.findings_of(WATCH.name, "open")} == {"q2"}


def test_the_replay_time_is_labelled_as_such_in_every_job_form():
    """`now` is for tests and replays: the run form (the flow's parameter schema) says so."""
    from flows.registry import JOBS

    unlabelled = [name for name, job in JOBS.items()
                  if "now" in (props := job.parameters.model_dump()["properties"])
                  and not props["now"].get("description", "").startswith("Replay only")]
    assert unlabelled == []


def test_every_block_parameter_is_a_picker_of_saved_blocks():
    """A parameter that names a block is typed `<Block> | str`: Prefect's run form offers the saved
    blocks of that type (the schema's definition carries its `block_type_slug`; tests/test_ui.py
    opens the form), and a name still works from Python, the CLI and prefect.yaml."""
    from flows.registry import JOBS

    blocks = {"aws_credentials": "aws-credentials", "store": "ops-store", "gcp_credentials": "gcp-credentials",
              "warehouse": "warehouse-connection", "pipelines_block": "integrity-pipelines"}
    seen, wrong = 0, []
    for name, job in JOBS.items():
        schema = job.parameters.model_dump()
        for parameter, slug in blocks.items():
            if parameter not in schema["properties"]:
                continue
            seen += 1
            refs = [o["$ref"].rsplit("/", 1)[1] for o in schema["properties"][parameter].get("anyOf", []) if "$ref" in o]
            if [schema["definitions"][r].get("block_type_slug") for r in refs] != [slug]:
                wrong.append(f"{name}.{parameter}")
    assert wrong == [] and seen >= 40


def test_a_job_runs_with_the_blocks_picked_in_its_form(aws, store):
    """The form sends `{"$ref": {"block_document_id": ...}}`; Prefect resolves it to the block
    before the run starts (`Flow.validate_parameters`), and the job uses that block."""
    plant_dlq("us-east-1", "orders")
    good = creds(region_name="us-east-1")
    picked = {"aws_credentials": {"$ref": {"block_document_id": str(AwsCredentials.load(good)._block_document_id)}},
              "store": {"$ref": {"block_document_id": str(store._block_document_id)}}}
    parameters = queue_health.validate_parameters({**picked, "regions": ["us-east-1"], "now": NOW})
    assert isinstance(parameters["aws_credentials"], AwsCredentials)
    assert parameters["store"]._block_document_name == store._block_document_name
    result = queue_health(**parameters)
    assert {(f.scope, f.resource_id) for f in result.findings} == {("123456789012/us-east-1", "orders-dlq")}
    assert open_keys(store) == {("123456789012/us-east-1", "orders-dlq")}


def test_a_dry_run_digest_says_what_apply_would_change(aws, store, routed):
    import re

    from flows.idle_resources import idle_resources
    from rules.idle import IdlePolicy

    ec2 = boto3.client("ec2", region_name="us-east-1")
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=100, VolumeType="gp3")["VolumeId"]
    idle_resources(policy=IdlePolicy(refresh_prices=False, volume_min_age_days=0), regions=["us-east-1"],
                   aws_credentials=creds(region_name="us-east-1"), store=store._block_document_name)
    [message] = routed.wait_for(1, timeout=120)
    assert "Would change (dry run: with apply, each waits for approval) (1):" in message.text
    assert re.search(rf"would [\w-]+ {volume} \(123456789012/us-east-1\): saves \$8\.00/mo", message.text)
