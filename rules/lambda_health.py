"""Lambda health: error rate, throttles and timeouts over a window, per-function overrides by tag.

A function can tune its own thresholds with the tag `dataplatform-ops:lambda-health`, whose
value is space-separated `key=value` pairs (AWS tag values allow no braces or commas):
`min_invocations=1 error_rate_warning=0.5`, or `off` to skip the function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rules.findings import Finding, Severity

OVERRIDE_TAG = "dataplatform-ops:lambda-health"


class LambdaThresholds(BaseModel):
    """What counts as unhealthy; every field can be overridden per function by its tag."""

    model_config = ConfigDict(extra="forbid")

    min_invocations: int = Field(
        default=10, ge=1,
        description="Invocations in the window below which the error rate is not judged.",
    )
    error_rate_warning: float = Field(
        default=0.05, gt=0, le=1, description="Errors / invocations that raise a warning."
    )
    error_rate_critical: float = Field(
        default=0.25, gt=0, le=1, description="Errors / invocations that raise a critical finding."
    )
    throttles_warning: int = Field(
        default=1, ge=1, description="Throttled invocations in the window that raise a warning."
    )
    timeout_ratio: float = Field(
        default=0.95, gt=0, le=1,
        description="Duration maximum at or above this share of the configured timeout is a timeout.",
    )

    @model_validator(mode="after")
    def _critical_above_warning(self) -> LambdaThresholds:
        if self.error_rate_critical < self.error_rate_warning:
            raise ValueError("error_rate_critical must be at least error_rate_warning")
        return self


class LambdaPolicy(LambdaThresholds):
    """Thresholds plus how the job looks (window, log scan, reminders)."""

    window_minutes: int = Field(
        default=15, ge=1, le=1440, description="How far back each run looks, in minutes."
    )
    scan_timeout_logs: bool = Field(
        default=True,
        description="Count 'Task timed out' lines in the logs of functions with errors "
        "(needs logs:FilterLogEvents; without it only the duration check runs).",
    )
    max_log_scans: int = Field(
        default=50, ge=0, le=1000,
        description="Most log groups read per region and run (the functions with most errors first).",
    )
    repeat_interval_hours: int = Field(
        default=6, ge=1, description="Hours before a still-failing function is announced again."
    )

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the window ending at the last whole minute."""
        end = now.replace(second=0, microsecond=0)
        return end - timedelta(minutes=self.window_minutes), end


@dataclass(frozen=True)
class LambdaFunction:
    """A function's configuration, as listed."""

    name: str
    region: str
    timeout_seconds: int
    memory_mb: int = 128
    runtime: str = ""
    architectures: tuple[str, ...] = ("x86_64",)
    log_group: str = ""  # empty: Lambda's default `/aws/lambda/<name>`
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.log_group:
            object.__setattr__(self, "log_group", f"/aws/lambda/{self.name}")

    @property
    def url(self) -> str:
        return (f"https://{self.region}.console.aws.amazon.com/lambda/home"
                f"?region={self.region}#/functions/{self.name}")


@dataclass(frozen=True)
class LambdaMetrics:
    """One function's CloudWatch numbers over the window."""

    invocations: float = 0
    errors: float = 0
    throttles: float = 0
    duration_max_ms: float | None = None


_FIELDS = set(LambdaThresholds.model_fields)


def thresholds_for(
    policy: LambdaPolicy, tags: Mapping[str, str]
) -> tuple[LambdaThresholds | None, str | None]:
    """(thresholds, problem): thresholds None when the tag says `off`; an invalid tag gives
    the policy's own thresholds and says what is wrong with it."""
    base = LambdaThresholds(**{k: getattr(policy, k) for k in _FIELDS})
    raw = (tags.get(OVERRIDE_TAG) or "").strip()
    if not raw:
        return base, None
    if raw.lower() == "off":
        return None, None
    pairs = {}
    for item in raw.split():
        key, sep, value = item.partition("=")
        if not sep or key not in _FIELDS:
            return base, (f"`{item}` is not key=value with a key among "
                          f"{', '.join(sorted(_FIELDS))} (or the value `off`)")
        pairs[key] = value
    try:
        return LambdaThresholds.model_validate({**base.model_dump(), **pairs}), None
    except ValidationError as exc:
        return base, "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                               for e in exc.errors())


def log_scan_candidates(
    functions: Iterable[LambdaFunction], metrics: Mapping[str, LambdaMetrics], policy: LambdaPolicy
) -> list[LambdaFunction]:
    """Functions whose logs are worth reading: timeouts count as Errors, so those with errors."""
    if not policy.scan_timeout_logs:
        return []
    erring = [f for f in functions
              if metrics.get(f.name, LambdaMetrics()).errors > 0 and thresholds_for(policy, f.tags)[0] is not None]
    erring.sort(key=lambda f: (-metrics[f.name].errors, f.name))
    return erring[: policy.max_log_scans]


def judge_functions(
    functions: Sequence[LambdaFunction],
    metrics: Mapping[str, LambdaMetrics],
    timed_out_lines: Mapping[str, int],
    policy: LambdaPolicy,
    scope: str,
) -> list[Finding]:
    """Findings for erroring, throttled and timing-out functions; idle ones are healthy."""
    found: list[Finding] = []
    window = f"in the last {policy.window_minutes} min"
    for fn in functions:
        limits, problem = thresholds_for(policy, fn.tags)
        if problem:
            found.append(Finding(
                kind="lambda-override-invalid", resource_id=fn.name, scope=scope,
                severity=Severity.INFO, url=fn.url,
                reason=f"tag {OVERRIDE_TAG} ignored, policy thresholds used: {problem}",
            ))
        if limits is None:
            continue
        m = metrics.get(fn.name, LambdaMetrics())
        if m.invocations >= limits.min_invocations and m.errors > 0:
            rate = m.errors / m.invocations
            if rate >= limits.error_rate_warning:
                critical = rate >= limits.error_rate_critical
                found.append(Finding(
                    kind="lambda-errors", resource_id=fn.name, scope=scope, url=fn.url,
                    severity=Severity.CRITICAL if critical else Severity.WARNING,
                    reason=(f"{m.errors:.0f} of {m.invocations:.0f} invocations failed ({rate:.1%}) "
                            f"{window}; threshold {limits.error_rate_critical if critical else limits.error_rate_warning:.0%}"),
                    numbers={"invocations": m.invocations, "errors": m.errors,
                             "error_rate": round(rate, 4)},
                ))
        if m.throttles >= limits.throttles_warning:
            found.append(Finding(
                kind="lambda-throttles", resource_id=fn.name, scope=scope, url=fn.url,
                reason=f"{m.throttles:.0f} invocations throttled {window} (concurrency limit reached)",
                numbers={"throttles": m.throttles, "invocations": m.invocations},
            ))
        limit_ms = fn.timeout_seconds * 1000
        near_limit = m.duration_max_ms is not None and m.duration_max_ms >= limits.timeout_ratio * limit_ms
        log_lines = timed_out_lines.get(fn.name, 0)
        if near_limit or log_lines:
            why = []
            if near_limit:
                why.append(f"longest run {m.duration_max_ms / 1000:.1f} s of a {fn.timeout_seconds} s timeout")
            if log_lines:
                why.append(f"{log_lines} 'Task timed out' log lines")
            found.append(Finding(
                kind="lambda-timeouts", resource_id=fn.name, scope=scope, url=fn.url,
                reason=f"{'; '.join(why)} {window}",
                numbers={"duration_max_ms": m.duration_max_ms, "timeout_seconds": fn.timeout_seconds,
                         "timed_out_log_lines": log_lines},
            ))
    return found


def metric_rows(
    functions: Iterable[LambdaFunction], metrics: Mapping[str, LambdaMetrics], scope: str, ts: datetime
) -> list[dict]:
    """Store history for functions that did anything in the window (idle ones add no rows)."""
    rows = []
    for fn in functions:
        m = metrics.get(fn.name)
        if m is None or not (m.invocations or m.throttles):
            continue
        subject = f"{scope}/{fn.name}"
        for name, value in (("invocations", m.invocations), ("errors", m.errors),
                            ("throttles", m.throttles), ("duration_max_ms", m.duration_max_ms)):
            if value is not None:
                rows.append({"name": f"lambda.{name}", "subject": subject, "ts": ts, "value": value})
    return rows
