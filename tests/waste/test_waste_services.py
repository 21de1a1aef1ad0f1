"""waste-checks' ECR, DynamoDB and Secrets Manager checks on moto, and the switch of an
underused provisioned table to on-demand through the approval path.

The checks run 30 days after the resources are created (`NOW`); young look-alikes are made under
freezegun. moto gaps bridged here:
- DynamoDB publishes no consumed-capacity metrics in moto: they are planted with PutMetricData;
- Secrets Manager in moto never records a read (`LastAccessedDate` stays empty): the secrets here
  are "never read", and the "read recently" case is tested on the rule
  (`test_a_secret_read_recently_is_in_use`).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from freezegun import freeze_time

from flows.waste_checks import JOB, waste_checks
from rules.waste import WastePolicy
from tests.approvals import run_and_answer
from tests.waste.test_waste_flow import KEEP, creds  # noqa: F401 - a fixture

REGION = "us-east-1"
NOW = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
KINDS = ["ecr-untagged-images", "ecr-repository-without-lifecycle", "dynamodb-underused-provisioned", "unused-secret"]
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:123456789012:table/"


def _manifest(layer: str) -> str:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"digest": "sha256:" + layer * 64, "size": 7023,
                                  "mediaType": "application/vnd.docker.container.image.v1+json"},
                       "layers": [{"digest": "sha256:" + layer * 64, "size": 32654,
                                   "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}]})


def plant_services() -> None:
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="etl-images")
    ecr.put_image(repositoryName="etl-images", imageManifest=_manifest("a"))  # untagged, 30 days old
    ecr.put_image(repositoryName="etl-images", imageManifest=_manifest("b"))  # untagged, 30 days old
    ecr.put_image(repositoryName="etl-images", imageManifest=_manifest("c"), imageTag="v1")  # tagged
    with freeze_time(NOW - timedelta(days=2)):
        ecr.put_image(repositoryName="etl-images", imageManifest=_manifest("d"))  # untagged but young
    ecr.create_repository(repositoryName="tidy-images")
    ecr.put_lifecycle_policy(repositoryName="tidy-images", lifecyclePolicyText=json.dumps({"rules": [{
        "rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                         "countUnit": "days", "countNumber": 14}, "action": {"type": "expire"}}]}))
    ecr.create_repository(repositoryName="kept-images", tags=[KEEP])
    ecr.put_image(repositoryName="kept-images", imageManifest=_manifest("e"))

    ddb = boto3.client("dynamodb", region_name=REGION)
    key = {"KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
           "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}]}
    for name, rcu, wcu, tags in (("events", 100, 50, []), ("sessions", 10, 10, []), ("kept", 100, 50, [KEEP])):
        ddb.create_table(TableName=name, ProvisionedThroughput={"ReadCapacityUnits": rcu, "WriteCapacityUnits": wcu},
                         **key, **({"Tags": tags} if tags else {}))
    ddb.create_table(TableName="on-demand", BillingMode="PAY_PER_REQUEST", **key)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    # events: 1,000,000 reads and 200,000 writes in 14 days; sessions: half its capacity for 14 days.
    for table, reads, writes in (("events", 1_000_000, 200_000), ("sessions", 10 * 14 * 86_400 / 2, 0),
                                 ("kept", 0, 0)):
        cloudwatch.put_metric_data(Namespace="AWS/DynamoDB", MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": "TableName", "Value": table}],
             "Timestamp": NOW - timedelta(days=1), "Value": value}
            for metric, value in (("ConsumedReadCapacityUnits", reads), ("ConsumedWriteCapacityUnits", writes))])

    sm = boto3.client("secretsmanager", region_name=REGION)
    with freeze_time(NOW - timedelta(days=200)):
        sm.create_secret(Name="legacy/api-key", SecretString="x")
        sm.create_secret(Name="kept/api-key", SecretString="x", Tags=[KEEP])
    sm.create_secret(Name="new/api-key", SecretString="x")  # 30 days old: not yet


def test_ecr_dynamodb_and_secrets_checks(creds, store):  # noqa: F811
    plant_services()
    result = waste_checks(policy=WastePolicy(checks=KINDS, min_monthly_usd=0), regions=[REGION],
                          aws_credentials=creds, store=store._block_document_name, now=NOW)
    assert result.errors == {}
    found = {(f.kind, f.numbers.get("table") or f.numbers.get("name") or f.resource_id): f for f in result.findings}
    assert set(found) == {("ecr-untagged-images", "etl-images"), ("ecr-repository-without-lifecycle", "etl-images"),
                          ("dynamodb-underused-provisioned", "events"), ("unused-secret", "legacy/api-key")}
    images = boto3.client("ecr", region_name=REGION).describe_images(repositoryName="etl-images")["imageDetails"]
    untagged = [i["imageSizeInBytes"] for i in images if not i.get("imageTags")][:2]
    ecr = found[("ecr-untagged-images", "etl-images")]
    assert (ecr.numbers["untagged_images"], ecr.numbers["untagged_bytes"]) == (2, sum(untagged))
    assert ecr.monthly_cost_usd == round(0.10 * sum(untagged) / 1024**3, 4)
    # Provisioned: (100 x $0.00013 + 50 x $0.00065) x 730 = $33.215; on-demand for what it used:
    # (1.0 M reads x $0.125 + 0.2 M writes x $0.625) per 14 days x 730/24/14 = $0.5432: saves $32.6718.
    table = found[("dynamodb-underused-provisioned", "events")]
    assert table.monthly_cost_usd == pytest.approx(33.215 - 0.25 * 730 / 24 / 14, abs=1e-4)
    assert table.reason == "provisioned 100 RCU / 50 WCU used at 0.8% over 14 days; on-demand would cost less"
    secret = found[("unused-secret", "legacy/api-key")]
    # $0.40 a month, under the $1 floor, is still reported: a secret nobody reads is a risk.
    assert (secret.monthly_cost_usd, secret.reason) == (0.4, "secret never read in its 200 days")
    assert {o.item_id for o in result.offers} == {TABLE_ARN + "events"}


def test_an_underused_table_switches_to_on_demand_once_approved(creds, store):  # noqa: F811
    plant_services()
    params = dict(policy=WastePolicy(checks=["dynamodb-underused-provisioned"]), regions=[REGION],
                  aws_credentials=creds, store=store._block_document_name, now=NOW)
    state = run_and_answer(waste_checks, {"approved": [TABLE_ARN + "events"]}, apply=True, **params)
    assert state.is_completed(), state.message
    ddb = boto3.client("dynamodb", region_name=REGION)
    modes = {t: ddb.describe_table(TableName=t)["Table"].get("BillingModeSummary", {}).get("BillingMode")
             for t in ("events", "sessions", "kept")}
    assert modes == {"events": "PAY_PER_REQUEST", "sessions": "PROVISIONED", "kept": "PROVISIONED"}
    assert [(a["resource_id"], a["outcome"]) for a in store.actions_of(JOB)] == [(TABLE_ARN + "events", "done")]
    assert waste_checks(**params).findings == []  # on-demand now: nothing left to judge
