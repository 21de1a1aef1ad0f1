"""`dataplatform-ops`: the operator's command line over the job registry.

    dataplatform-ops jobs                         # every job: schedule, targets, blocks, permissions
    dataplatform-ops run idle-resources --regions eu-west-1 --set policy.volume_min_age_days=3
    dataplatform-ops check --regions eu-west-1    # blocks, config and read permissions, per target
    dataplatform-ops iam idle-resources --read-only
    dataplatform-ops setup --store-url postgresql+psycopg://ops@db/ops --aws-region eu-west-1
    dataplatform-ops demo

Thin: the jobs come from `flows/registry.py`, schedules from prefect.yaml, policies from
`deployments/iam.py`, blocks from `deployments/blocks.py`, the demo from `deployments/demo.py`.
Runs go to the Prefect API in PREFECT_API_URL; without one, Prefect starts a temporary local
server (its database under PREFECT_HOME keeps the blocks between commands). Exit codes: 0 all
well, 1 a run failed or covered nothing (or `check` found a problem), 2 bad input.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

import yaml
from cyclopts import App, Parameter
from pydantic import ValidationError

from rules.config import ConfigError
from rules.text import redact

app = App(name="dataplatform-ops", help="Run, check and set up the dataplatform-ops jobs.",
          version_flags=[], help_format="plaintext")

# Parameters that name a block, and the block type each loads (one meaning in every job).
BLOCK_TYPES = {
    "aws_credentials": "prefect_aws:AwsCredentials",
    "store": "blocks.store:OpsStore",
    "warehouse": "blocks.warehouse:WarehouseConnection",
    "gcp_credentials": "prefect_gcp:GcpCredentials",
    "pipelines_block": "blocks.pipelines:IntegrityPipelines",
}
# Parameters that choose what a run reads.
TARGET_PARAMETERS = ("regions", "role_arns", "projects", "warehouse", "pipelines_file", "pipelines_block",
                     "flow_run_id")
API_WAIT_SECONDS = 30
Sets = Annotated[Sequence[str], Parameter(name="--set", help="a parameter, key=value (YAML value; "
                                          "dotted keys reach into the policy), repeatable")]
Regions = Annotated[Sequence[str] | None, Parameter(consume_multiple=True, help="regions to read")]


class Usage(ConfigError):
    """Bad input on the command line: exit code 2."""


def _registry() -> dict[str, Any]:
    from flows.registry import JOBS

    return JOBS


def _flow(job: str) -> Any:
    jobs = _registry()
    if job not in jobs:
        raise Usage(f"unknown job {job!r}; jobs: {', '.join(sorted(jobs))} (`dataplatform-ops jobs`)")
    return jobs[job]


def _deployments() -> dict[str, dict[str, Any]]:
    """Job name -> its first prefect.yaml deployment."""
    from deployments.serve import deployment_specs, load_flow

    found: dict[str, dict[str, Any]] = {}
    for spec in deployment_specs():
        found.setdefault(load_flow(spec["entrypoint"]).name, spec)
    return found


def _properties(fl: Any) -> dict[str, Any]:
    return fl.parameters.model_dump()["properties"]


def _defaults(fl: Any, deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters a scheduled run gets: the flow's defaults, then its deployment's."""
    values = {k: spec["default"] for k, spec in _properties(fl).items() if "default" in spec}
    return {**values, **((deployment or {}).get("parameters") or {})}


def _schedule(deployment: Mapping[str, Any] | None) -> str:
    if deployment is None:
        return "not deployed"
    schedules = deployment.get("schedules") or []
    if not schedules:
        return "on demand (automations start it)"
    parts = []
    for s in schedules:
        if s.get("cron"):
            parts.append(f"cron {s['cron']} {s.get('timezone', 'UTC')}")
        elif s.get("interval"):
            parts.append(f"every {s['interval']} s")
    return ", ".join(parts)


def _say(value: Any) -> str:
    if value is None:
        return "unset"
    return json.dumps(value) if not isinstance(value, str) else value


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _block_class(parameter: str) -> type:
    module, name = BLOCK_TYPES[parameter].split(":")
    return getattr(importlib.import_module(module), name)


# --- jobs ------------------------------------------------------------------------------


@app.command
def jobs() -> int:
    """Every job: its schedule, the targets it reads, the blocks it needs and its IAM permissions."""
    from deployments.iam import flow_actions, flow_modules

    modules, deployments = flow_modules(), _deployments()
    for name, fl in sorted(_registry().items()):
        deployment = deployments.get(name)
        values, props = _defaults(fl, deployment), _properties(fl)
        doc = (fl.description or "").strip().splitlines()[0] if fl.description else ""
        print(f"{name}: {doc}")
        print(f"  schedule     {_schedule(deployment)}")
        targets = [f"{p}={_say(values.get(p))}" if p in values else f"{p} (required)"
                   for p in TARGET_PARAMETERS if p in props]
        print(f"  targets      {', '.join(targets) or '-'}")
        blocks = [f"{p}={_say(values.get(p))} ({BLOCK_TYPES[p].split(':')[1]})"
                  for p in BLOCK_TYPES if p in props and values.get(p)]
        print(f"  blocks       {', '.join(blocks) or '-'}")
        read, every = flow_actions(modules[name], read_only=True), flow_actions(modules[name])
        print(f"  permissions  {', '.join(sorted(read)) or 'no AWS calls'}")
        if every - read:
            print(f"  with apply   {', '.join(sorted(every - read))}")
        print()
    return 0


# --- run -------------------------------------------------------------------------------


def _merge(target: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for key in path:
        node = target.setdefault(key, {})
        if not isinstance(node, dict):
            raise Usage(f"--set {dotted}: `{key}` is not a group of settings")
        target = node
    target[last] = value


def parameters(fl: Any, sets: Iterable[str], regions: Sequence[str] | None = None, apply: bool = False,
               base: Mapping[str, Any] | None = None, validate: bool = True) -> dict[str, Any]:
    """The run's parameters from `--set key=value`, `--regions` and `--apply`, checked against the
    job's signature and validated by Prefect, before anything is called."""
    props = _properties(fl)
    values: dict[str, Any] = json.loads(json.dumps(dict(base or {})))
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise Usage(f"--set {item!r}: write key=value, e.g. --set policy.repeat_interval_hours=12")
        if key.split(".")[0] not in props:
            raise Usage(f"--set {key}: {fl.name} has no parameter `{key.split('.')[0]}`; "
                        f"its parameters: {', '.join(props)}")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        _merge(values, key, value)
    for flag, name, value in (("--regions", "regions", list(regions) if regions else None),
                              ("--apply", "apply", True if apply else None)):
        if value is None:
            continue
        if name not in props:
            raise Usage(f"{flag}: {fl.name} has no `{name}` parameter")
        values[name] = value
    if not validate:
        return values
    quiet = logging.getLogger("prefect.flows")
    level, quiet.level = quiet.level, logging.CRITICAL  # Prefect logs the failure too, as a dict
    try:
        fl.validate_parameters(values)
    except Exception as exc:  # Prefect's ParameterTypeError carries pydantic's field list
        raise Usage(f"parameters of {fl.name}: {' '.join(str(exc).split())}") from None
    finally:
        quiet.level = level
    return values


def _api() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or "a temporary local Prefect server (PREFECT_API_URL is not set)"


def _print_table(rows: Sequence[Mapping[str, Any]], limit: int, width: int = 60) -> None:
    if not rows:
        print("(no rows)")
        return
    columns = list(rows[0])
    shown = [{c: str(r.get(c, ""))[:width] for c in columns} for r in rows[:limit]]
    widths = {c: max(len(c), *(len(r[c]) for r in shown)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in shown:
        print("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
    if len(rows) > limit:
        print(f"... and {len(rows) - limit} more rows (--show N, or the run's artifact)")


def _run_artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a.data for a in found if a.key}


@app.command
def run(
    job: str,
    /,
    *,
    set_: Sets = (),
    regions: Regions = None,
    apply: bool = False,
    show: int = 50,
    language: Literal["en", "ko"] = "en",
) -> int:
    """Run one job once and print its findings and the chat message it sends.

    Parameters
    ----------
    job
        The job's name (`dataplatform-ops jobs` lists them).
    apply
        Change things: the run publishes its plan and waits for a person's approval in the UI.
    show
        Findings rows to print.
    language
        Language of the chat message printed (the automations send the chat block's).
    """
    from deployments.blocks import wait_for_api
    from tasks.notify import messages_of
    from tasks.report import artifact_key

    try:
        fl = _flow(job)
        values = parameters(fl, set_, regions, apply, base=(_deployments().get(job) or {}).get("parameters"))
        wait_for_api(API_WAIT_SECONDS, print)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    print(f"Running {job} against {_api()}")
    state = fl(**values, return_state=True)
    run_id = state.state_details.flow_run_id
    artifacts = _run_artifacts(run_id)
    summary = artifacts.get(artifact_key(job, "summary"))
    if summary:
        print("\n" + summary)
    table = artifacts.get(artifact_key(job, "findings"))
    if table is not None:
        print("\n## Findings table\n")
        _print_table(json.loads(table) if isinstance(table, str) else table, show)
    messages = messages_of(run_id)
    for m in messages:
        m = (m.get("i18n") or {}).get(language) or m
        print(f"\n## Chat message\n\n{m.get('subject', '')}\n{m.get('text', '')}")
    if not messages:
        print("\n(no chat message: nothing new, escalated, due for a reminder or resolved)")
    if state.is_completed():
        print(f"\n{job}: {state.name}")
        return 0
    print(f"\n{job}: {state.name}: {state.message or ''}", file=sys.stderr)
    return 1


# --- check -----------------------------------------------------------------------------


def _check_blocks(needed: dict[tuple[str, str], list[str]]) -> tuple[dict[tuple[str, str], Any], bool]:
    """Load each (parameter, block name) once; print ok or the error. -> loaded blocks, all ok."""
    from blocks.loading import load_block
    from blocks.store import load_store

    loaded, ok = {}, True
    for (parameter, name), users in sorted(needed.items()):
        cls = _block_class(parameter)
        try:
            block = load_store(name) if parameter == "store" else load_block(cls, name, parameter)
            loaded[(parameter, name)] = block
            region = ""
            if parameter == "aws_credentials":
                region = f", region {block.region_name}" if block.region_name else (
                    ", no region: regions are discovered from us-east-1 (`setup --aws-region` sets one)")
            print(f"  ok     {name} ({cls.__name__}{region}), for {', '.join(users)}")
        except (ConfigError, ValidationError) as exc:
            ok = False
            print(f"  error  {name} ({cls.__name__}), for {', '.join(users)}: {exc}")
        except Exception as exc:  # e.g. the store's database refusing connections
            ok = False
            print(f"  error  {name} ({cls.__name__}): {type(exc).__name__}: {redact(str(exc))}")
    return loaded, ok


def _accounts(creds: Any, role_arns: Sequence[str], regions: Sequence[str] | None) -> list[tuple[str, Any, list[str] | str]]:
    """(label, Account, regions) per account; regions is an error text when the account cannot be entered."""
    from tasks.aws.clients import Account, enabled_regions
    from tasks.aws.probe import classify

    out = []
    for arn in [None, *role_arns]:
        account = Account(creds, arn)
        label = arn or "credentials' account"
        try:
            label = account.account_id
            out.append((label, account, list(regions) if regions else enabled_regions(account, "ec2")))
        except Exception as exc:  # an answer to report, like a probe's
            answer = classify("sts:AssumeRole" if arn else "ec2:DescribeRegions", exc)
            out.append((label, account, f"{answer.outcome} {answer.action}: {answer.detail}"))
    return out


@app.command
def check(
    *names: str,
    set_: Sets = (),
    regions: Regions = None,
    role_arns: Annotated[Sequence[str], Parameter(consume_multiple=True)] = (),
    chat_block: str = "ops-chat",
) -> int:
    """Validate blocks and config, then prove each job's read permissions with harmless calls.

    Prints job x account x region -> ok / missing permission (named) / unreachable.

    Parameters
    ----------
    names
        Jobs to check (default: every job).
    chat_block
        The GoogleChatWebhook block the automations send through.
    """
    from blocks.google_chat import GoogleChatWebhook
    from blocks.loading import load_block
    from deployments.blocks import wait_for_api
    from deployments.iam import flow_actions, flow_modules
    from tasks.aws.probe import ENTERED

    try:
        chosen = {n: _flow(n) for n in (names or sorted(_registry()))}
        deployments = _deployments()
        unused = {i.partition("=")[0].split(".")[0] for i in set_} - {
            p for fl in chosen.values() for p in _properties(fl)}
        if unused:
            raise Usage(f"--set {', '.join(sorted(unused))}: no chosen job has such a parameter")
        values = {}
        for n, fl in chosen.items():
            base = _defaults(fl, deployments.get(n))
            mine = [i for i in set_ if i.partition("=")[0].split(".")[0] in _properties(fl)]
            required = fl.parameters.model_dump().get("required", [])
            # A parameter given per run (pipeline-failure-report's flow_run_id) cannot be validated here.
            values[n] = parameters(fl, mine, base=base, validate=all(p in base for p in required))
        wait_for_api(API_WAIT_SECONDS, print)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    print(f"Checking against {_api()}\n\nBlocks")
    needed: dict[tuple[str, str], list[str]] = {}
    for n, fl in chosen.items():
        for p in BLOCK_TYPES:
            if p in _properties(fl) and values[n].get(p):
                needed.setdefault((p, values[n][p]), []).append(n)
    loaded, ok = _check_blocks(needed)
    try:
        load_block(GoogleChatWebhook, chat_block, "--chat-block")
        print(f"  ok     {chat_block} (GoogleChatWebhook), for the automations")
    except ConfigError as exc:
        ok = False
        print(f"  error  {chat_block} (GoogleChatWebhook), for the automations: {exc}")

    print("\nRead permissions (harmless calls)")
    modules, accounts, answers = flow_modules(), {}, {}
    for n, fl in chosen.items():
        actions = sorted(flow_actions(modules[n], read_only=True) - ENTERED)
        if not actions:
            continue
        if "aws_credentials" not in _properties(fl):
            print(f"  {n}: AWS through its warehouse block's credentials: not probed")
            continue
        block = values[n]["aws_credentials"]
        creds = loaded.get(("aws_credentials", block))
        if creds is None:
            print(f"  {n}: not probed (its credentials block did not load)")
            continue
        where = (block, tuple(values[n].get("role_arns") or role_arns), tuple(regions or values[n].get("regions") or ()))
        if where not in accounts:
            accounts[where] = _accounts(creds, where[1], where[2])
        for label, account, found in accounts[where]:
            if isinstance(found, str):
                ok = False
                print(f"  {n}  {label}  {found}")
                continue
            for region in found:
                line, bad = _verdict([_answer(answers, account, label, region, a) for a in actions])
                ok = ok and not bad
                print(f"  {n}  {label}/{region}  {line}")
    print("\nall ok" if ok else "\nproblems found (above)")
    return 0 if ok else 1


def _answer(cache: dict[tuple, Any], account: Any, account_id: str, region: str, action: str) -> Any:
    """One probe's answer, asked once per account x region (once per account for a global one)."""
    from tasks.aws.probe import PROBES, Answer, a_bucket, probe

    spec = PROBES.get(action)
    if spec is None:
        return Answer(action, "unproven", "no probe declared")
    key = (id(account), region if spec.regional else "", action)
    if key not in cache:
        bucket = None
        if spec.bucket:
            if (id(account), "bucket") not in cache:
                cache[(id(account), "bucket")] = a_bucket(account)
            bucket = cache[(id(account), "bucket")]
        cache[key] = probe(account, region, action, bucket, account_id)
    return cache[key]


def _verdict(answers: Sequence[Any]) -> tuple[str, bool]:
    """One line for a job's answers in one account x region, and whether it is a problem."""
    parts, bad = [], False
    for outcome in ("missing", "unreachable", "unproven"):
        these = [a for a in answers if a.outcome == outcome]
        if not these:
            continue
        bad = bad or outcome != "unproven"
        if outcome == "missing":
            parts.append("missing " + ", ".join(a.action for a in these))
        else:
            parts.append(f"{outcome} " + ", ".join(f"{a.action} ({a.detail[:100]})" for a in these))
    return ("; ".join(parts) if parts else f"ok ({len(answers)} permissions)"), bad


# --- iam, setup, demo ------------------------------------------------------------------


@app.command
def iam(job: str | None = None, /, *, read_only: bool = False) -> int:
    """The least-privilege IAM policy of one job, or of every job and the collection.

    Parameters
    ----------
    read_only
        Without the actions only `apply` uses.
    """
    from deployments.iam import policies

    try:
        print(json.dumps(policies(job, read_only), indent=2))
    except ConfigError as exc:
        _err(str(exc))
        return 2
    return 0


@app.command
def setup(
    *,
    chat_url: str | None = None,
    store_url: str | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
    allow_relative_sqlite: bool = False,
    overwrite: bool = False,
    wait_seconds: float = 60,
) -> int:
    """Create the blocks the jobs load by default (`ops-store`, `aws`, `ops-chat`), unattended.

    Parameters
    ----------
    chat_url
        The Google Chat space's incoming-webhook URL (default: GOOGLE_CHAT_WEBHOOK_URL).
    store_url
        The store's database URL (default: OPS_STORE_URL).
    aws_region
        Region of the `aws` block (default: AWS_REGION, then AWS_DEFAULT_REGION).
    aws_endpoint_url
        A custom AWS endpoint: LocalStack, moto, a VPC endpoint (default: AWS_ENDPOINT_URL).
    allow_relative_sqlite
        Accept sqlite:///relative.db (flows run on this machine only).
    overwrite
        Replace blocks that exist.
    wait_seconds
        How long to wait for a Prefect API that is still starting.
    """
    from blocks.loading import validation_message
    from deployments.blocks import create_blocks

    try:
        create_blocks(
            chat_url=chat_url or os.environ.get("GOOGLE_CHAT_WEBHOOK_URL"),
            store_url=store_url or os.environ.get("OPS_STORE_URL"),
            aws_region=aws_region, aws_endpoint_url=aws_endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
            allow_relative_sqlite=allow_relative_sqlite, overwrite=overwrite, wait_seconds=wait_seconds,
        )
    except ValidationError as exc:
        _err(validation_message(exc))
        return 2
    except ConfigError as exc:
        _err(str(exc))
        return 2
    return 0


@app.command
def demo(*, keep_running: bool = False, scale: int = 3) -> int:
    """Run every job once against local stand-ins of AWS, BigQuery, Redshift and Google Chat.

    Parameters
    ----------
    keep_running
        Keep the Prefect UI and the stand-ins up after the summary, until Ctrl-C.
    scale
        How much waste to plant.
    """
    from deployments import demo as demo_module

    demo_module.main(["--keep-running" if keep_running else "--exit", "--scale", str(scale)])
    return 0


def main() -> None:
    app()


if __name__ == "__main__":
    main()
