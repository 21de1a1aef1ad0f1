"""Automations as code: flow failures and finding digests -> Google Chat.

    uv run python -m deployments.automations --chat-block ops-chat
    uv run python -m deployments.automations --cloud-webhook-block ops-chat-webhook

Self-hosted servers run our `GoogleChatWebhook` block (cards, threads, retries). Prefect
Cloud cannot run custom block code, so `--cloud-webhook-block` routes the same events
through Prefect's built-in `Webhook` block with a Google Chat JSON payload instead.
Applying twice changes nothing: automations are matched by name and updated in place.

Pipeline failures (`--pipeline-failures`): Failed, Crashed and TimedOut runs of every
deployment (narrowed by `--include-tag`, `--include-deployment`, `--exclude-deployment`, a glob
on the deployment's name, and `--exclude-tag`) start the `pipeline-failure-report` deployment
with the run's id, so flows without our hook get a message with their logs. Runs of
deployments tagged `report-task-failures` that complete with failed tasks get one too, and
runs still Late `--late-after-minutes` (default 10) after turning Late. The report deployment
runs one report at a time, so when many runs fail at once the running report takes over the
waiting ones and sends grouped messages; slow runs are found by its scheduled sweep, not here.

Messages are in the chat block's `language` (`en` or `ko`): apply the automations again after
changing it.

Silent pipelines: a deployment tagged `silent-after:6h` (m, h or d) gets a proactive
automation that alerts when none of its runs completed within that window. Proactive
triggers run on the server's clock (`prefect_test_harness` does not run them).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client
from prefect.events.actions import CallWebhook, RunDeployment, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from blocks.google_chat import GoogleChatWebhook
from blocks.loading import load_block
from flows.pipeline_failure_report import JOB as REPORT_FLOW
from rules.config import ConfigError
from rules.messages import crashed_templates, silent_deployment
from rules.pipeline_failures import COLLECTION_TAG
from tasks.notify import EVENT_FINDINGS, EVENT_FLOW_FAILED, owners_of

NAME_PREFIX = "dataplatform-ops: "
SILENT_PREFIX = NAME_PREFIX + "silent "
SILENT_TAG = "silent-after:"
PIPELINE_PREFIX = NAME_PREFIX + "pipeline "
REPORT_DEPLOYMENT = f"{REPORT_FLOW}/{REPORT_FLOW}"
TASK_FAILURES_TAG = "report-task-failures"
# `{{ flow_run.id }}` alone fails to render: a one-expression template is passed through
# `tojson`, which cannot encode a UUID.
REPORT_PARAMETERS = {"flow_run_id": "{{ flow_run.id|string }}"}
_WINDOW = re.compile(r"^(\d{1,4})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}

def payload_templates(language: str) -> tuple[str, str]:
    """Subject and body templates of our events in `language` (`tasks.notify.message_fields`);
    an event without that language (sent by an older version) falls back to English."""
    if language == "en":
        return "{{ event.payload.subject }}", "{{ event.payload.text }}"
    return tuple(f"{{{{ event.payload.i18n.{language}.{part} or event.payload.{part} }}}}"
                 for part in ("subject", "text"))


def _triggers(language: str) -> dict[str, tuple[EventTrigger, str, str]]:
    """Name -> (trigger, subject template, body template)."""
    subject, text = payload_templates(language)
    # `[flow/deployment]` threads a deployment's alerts per day, as the failure hook's subjects do.
    crashed_subject, crashed_text = crashed_templates(language)
    return {
        "flow run failed": (
            EventTrigger(
                expect={EVENT_FLOW_FAILED},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            subject,
            text,
        ),
        # A crashed process may not run its failure hook: route Prefect's own event for the
        # collection's deployments (tagged `dataplatform-ops` in prefect.yaml).
        "flow run crashed": (
            EventTrigger(
                expect={"prefect.flow-run.Crashed"},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related={"prefect.resource.id": f"prefect.tag.{COLLECTION_TAG}"},
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            crashed_subject,
            crashed_text,
        ),
        "findings changed": (
            EventTrigger(
                expect={EVENT_FINDINGS},
                match={"prefect.resource.id": "dataplatform-ops.job.*"},
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            subject,
            text,
        ),
    }


def chat_payload(subject: str, text: str) -> str:
    """Google Chat JSON for Prefect's built-in Webhook block (Cloud variant): plain text.

    The subject and text templates are captured, then `tojson` escapes them into JSON.
    """
    return (
        "{% set subject %}" + subject + "{% endset %}"
        "{% set text %}" + text + "{% endset %}"
        '{"text": {{ ("*" ~ subject ~ "*\\n" ~ text)|tojson }}}'
    )


def _sender(chat_block: str | None, cloud_webhook_block: str | None) -> tuple[Any, str]:
    """`(subject, text) -> action` for the one chat destination given, and its language (the
    chat block's `language`; English through Prefect Cloud's built-in Webhook block)."""
    if bool(chat_block) == bool(cloud_webhook_block):
        raise ConfigError("give exactly one of --chat-block or --cloud-webhook-block")
    if chat_block:
        block = load_block(GoogleChatWebhook, chat_block, "--chat-block")
        block_id = block._block_document_id
        return (lambda subject, text: SendNotification(block_document_id=block_id, subject=subject, body=text),
                block.language)
    block_id = load_block(Webhook, cloud_webhook_block, "--cloud-webhook-block")._block_document_id
    return (lambda subject, text: CallWebhook(block_document_id=block_id, payload=chat_payload(subject, text)),
            "en")


def build_automations(*, chat_block: str | None = None, cloud_webhook_block: str | None = None) -> list[AutomationCore]:
    """The collection's automations, routed to one chat destination, in its language."""
    send, language = _sender(chat_block, cloud_webhook_block)
    automations = []
    for name, (trigger, subject, text) in _triggers(language).items():
        action = send(subject, text)
        automations.append(
            AutomationCore(
                name=NAME_PREFIX + name,
                description=f"dataplatform-ops: {name} -> Google Chat",
                trigger=trigger,
                actions=[action],
                tags=[COLLECTION_TAG],
            )
        )
    return automations


def silent_window(tags: Any) -> tuple[timedelta, str] | None:
    """The `silent-after:<n><m|h|d>` window of a deployment's tags and its text, if any."""
    for tag in tags or ():
        if tag.startswith(SILENT_TAG):
            label = tag[len(SILENT_TAG):]
            match = _WINDOW.match(label)
            if not match:
                raise ConfigError(f"deployment tag {tag!r}: write `silent-after:` and a number with "
                                  "m, h or d, e.g. `silent-after:6h`")
            return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))}), label
    return None


def build_silent_automations(
    *, chat_block: str | None = None, cloud_webhook_block: str | None = None
) -> list[AutomationCore]:
    """One proactive automation per deployment tagged `silent-after:<window>`."""
    send, language = _sender(chat_block, cloud_webhook_block)
    automations = []
    with get_client(sync_client=True) as client:
        deployments, offset = [], 0
        while page := client.read_deployments(limit=200, offset=offset):
            deployments += page
            offset += len(page)
        for deployment in deployments:
            silent = silent_window(deployment.tags)
            if silent is None:
                continue
            window, label = silent
            full_name = f"{client.read_flow(deployment.flow_id).name}/{deployment.name}"
            subject, text = silent_deployment(full_name, label, owners_of(deployment.tags), language)
            automations.append(AutomationCore(
                name=SILENT_PREFIX + full_name,
                description=f"dataplatform-ops: {full_name} silent for {label} -> Google Chat",
                trigger=EventTrigger(
                    expect={"prefect.flow-run.Completed"},
                    match={"prefect.resource.id": "prefect.flow-run.*"},
                    match_related={"prefect.resource.id": f"prefect.deployment.{deployment.id}"},
                    posture=Posture.Proactive,
                    threshold=1,
                    within=window,
                ),
                actions=[send(subject, text)],
                tags=[COLLECTION_TAG],
            ))
    return automations


def build_pipeline_failure_automations(
    report_deployment_id: UUID,
    *,
    include_tags: Sequence[str] = (),
    exclude_tags: Sequence[str] = (),
    include_deployments: Sequence[str] = (),
    exclude_deployments: Sequence[str] = (),
    late_after: timedelta = timedelta(minutes=10),
) -> list[AutomationCore]:
    """Failed/Crashed/TimedOut runs of matching deployments, opted-in completed runs with failed
    tasks, and Late runs (after `late_after`, when the report checks they are still late) ->
    a run of the report deployment.

    A related-resource filter matches when any related resource does, so one tag cannot be
    excluded there (a run has many tags): excluded tags go to the report flow, which skips
    them. A run has one flow and one deployment, so those are excluded here; the report flow
    itself is always excluded, or its own failures would start reports of reports.
    """
    related: list[dict[str, Any]] = [
        {"prefect.resource.role": "flow", "prefect.resource.name": f"!{REPORT_FLOW}"},
        {"prefect.resource.role": "deployment", "prefect.resource.name": list(include_deployments) or "*"},
        *({"prefect.resource.role": "deployment", "prefect.resource.name": f"!{p}"} for p in exclude_deployments),
    ]
    if include_tags:
        related.append({"prefect.resource.role": "tag",
                        "prefect.resource.id": [f"prefect.tag.{t}" for t in include_tags]})
    parameters = {**REPORT_PARAMETERS, "exclude_tags": list(exclude_tags)}
    run_report = RunDeployment(source="selected", deployment_id=report_deployment_id, parameters=parameters)
    opted_in = {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TASK_FAILURES_TAG}"}
    triggers = {
        "failures": ({"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"},
                     related, run_report),
        "task failures": ({"prefect.flow-run.Completed"}, [*related, opted_in], run_report),
        "late runs": ({"prefect.flow-run.Late"}, related,
                      run_report.model_copy(update={"schedule_after": late_after})),
    }
    return [
        AutomationCore(
            name=PIPELINE_PREFIX + name,
            description=f"dataplatform-ops: pipeline {name} -> {REPORT_DEPLOYMENT}",
            trigger=EventTrigger(
                expect=expect,
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=match_related,
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[action],
            tags=[COLLECTION_TAG],
        )
        for name, (expect, match_related, action) in triggers.items()
    ]


def apply_pipeline_failure_automations(**filters: Any) -> list[UUID]:
    """Create or update the pipeline-failure automations (the report deployment must exist)."""
    with get_client(sync_client=True) as client:
        report_deployment_id = client.read_deployment_by_name(REPORT_DEPLOYMENT).id
    return _apply(build_pipeline_failure_automations(report_deployment_id, **filters))


def apply_automations(**destination: str | None) -> list[UUID]:
    """Create or update the collection's automations; returns their ids."""
    return _apply(build_automations(**destination))


def apply_silent_automations(**destination: str | None) -> list[UUID]:
    """Create or update the silent-deployment automations; delete those whose tag is gone."""
    ids = _apply(wanted := build_silent_automations(**destination))
    names = {a.name for a in wanted}
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if automation.name.startswith(SILENT_PREFIX) and automation.name not in names:
                client.delete_automation(automation.id)
    return ids


def _apply(automations: list[AutomationCore]) -> list[UUID]:
    ids = []
    with get_client(sync_client=True) as client:
        for automation in automations:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                for extra in existing[1:]:
                    client.delete_automation(extra.id)
                ids.append(existing[0].id)
            else:
                ids.append(client.create_automation(automation))
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--chat-block", help="GoogleChatWebhook block name (self-hosted server).")
    where.add_argument("--cloud-webhook-block", help="built-in Webhook block name (Prefect Cloud).")
    parser.add_argument("--pipeline-failures", action="store_true",
                        help=f"also report failures of other deployments (needs {REPORT_DEPLOYMENT}).")
    for flag, what in [("--include-tag", "only deployments with one of these tags"),
                       ("--exclude-tag", "not runs with this tag"),
                       ("--include-deployment", "only deployment names matching one of these globs"),
                       ("--exclude-deployment", "not deployment names matching this glob")]:
        parser.add_argument(flag, action="append", default=[], help=f"--pipeline-failures: {what}.")
    parser.add_argument("--late-after-minutes", type=float, default=10,
                        help="--pipeline-failures: report runs still Late this long after turning Late.")
    args = parser.parse_args(argv)
    try:
        destination = {"chat_block": args.chat_block, "cloud_webhook_block": args.cloud_webhook_block}
        ids = apply_automations(**destination)
        silent = apply_silent_automations(**destination)
        pipeline = apply_pipeline_failure_automations(
            include_tags=args.include_tag, exclude_tags=args.exclude_tag,
            include_deployments=args.include_deployment, exclude_deployments=args.exclude_deployment,
            late_after=timedelta(minutes=args.late_after_minutes),
        ) if args.pipeline_failures else []
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"applied {len(ids)} automations, {len(silent)} silent-deployment automations and "
          f"{len(pipeline)} pipeline-failure automations")


if __name__ == "__main__":
    main()
