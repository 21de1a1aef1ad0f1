"""The job registry: every job of the collection, listed once.

prefect.yaml, the IAM policy generator and the contract tests read it; a new job is its own
module(s), its tests and one line here.
"""

from __future__ import annotations

from prefect import Flow

from flows.bigquery_cost_report import bigquery_cost_report
from flows.bigquery_query_cost_watch import bigquery_query_cost_watch
from flows.data_integrity import data_integrity
from flows.dev_parking import dev_parking
from flows.ebs_rightsizing import ebs_rightsizing
from flows.graviton_advisor import graviton_advisor
from flows.idle_resources import idle_resources
from flows.lambda_health import lambda_health
from flows.pipeline_failure_report import pipeline_failure_report
from flows.query_watch import query_watch
from flows.queue_health import queue_health
from flows.redshift_health import redshift_health
from flows.s3_intelligent_tiering import s3_intelligent_tiering

JOBS: dict[str, Flow] = {f.name: f for f in (
    bigquery_cost_report, bigquery_query_cost_watch, data_integrity, dev_parking, ebs_rightsizing,
    graviton_advisor, idle_resources, lambda_health, pipeline_failure_report, query_watch, queue_health, redshift_health,
    s3_intelligent_tiering,
)}
