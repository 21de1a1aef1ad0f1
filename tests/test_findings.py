"""The finding lifecycle and the messages are pure: tested with plain values and a fixed now."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from rules.findings import Coverage, Finding, KnownFinding, Severity, diff_findings
from rules.messages import findings_digest, flow_failure_message
from rules.text import mask_sql_literals, redact

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
DAY = timedelta(hours=24)
READ = Coverage({"111/us-east-1", "222/eu-west-1"})  # a run that read both targets


def finding(resource: str, severity: Severity = Severity.WARNING, cost: float | None = None) -> Finding:
    return Finding(kind="idle-volume", resource_id=resource, scope="111/us-east-1",
                   severity=severity, reason="unattached", monthly_cost_usd=cost)


def known(f: Finding, alerted: datetime | None) -> KnownFinding:
    return KnownFinding(key=f.key, severity=f.severity, first_seen=NOW - DAY, last_alerted=alerted,
                        kind=f.kind, scope=f.scope, resource_id=f.resource_id)


def test_new_findings_open_and_missing_ones_resolve():
    a, b = finding("vol-a"), finding("vol-b")
    t = diff_findings({b.key: known(b, NOW)}, [a], NOW, DAY, READ)
    assert t.opened == [a]
    assert t.resolved == [b.key]
    assert not t.reminded and not t.escalated


def test_open_finding_is_quiet_until_the_repeat_interval_then_reminded():
    a = finding("vol-a")
    quiet = diff_findings({a.key: known(a, NOW - timedelta(hours=23))}, [a], NOW, DAY, READ)
    assert quiet.is_quiet and quiet.still_open == [a]
    due = diff_findings({a.key: known(a, NOW - DAY)}, [a], NOW, DAY, READ)
    assert due.reminded == [a]


def test_higher_severity_escalates_at_once_lower_does_not():
    a = finding("vol-a")
    worse = finding("vol-a", Severity.CRITICAL)
    assert diff_findings({a.key: known(a, NOW)}, [worse], NOW, DAY, READ).escalated == [worse]
    calmer = finding("vol-a", Severity.INFO)
    assert diff_findings({a.key: known(a, NOW)}, [calmer], NOW, DAY, READ).is_quiet


def test_duplicate_findings_in_one_run_count_once():
    a = finding("vol-a")
    assert diff_findings({}, [a, a], NOW, DAY, READ).opened == [a]


def test_finding_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="colour"):
        Finding(kind="k", resource_id="r", reason="x", colour="red")


def test_digest_lists_changes_and_total_cost():
    a, b = finding("vol-a", cost=8.0), finding("vol-b", cost=2.5)
    t = diff_findings({}, [a, b], NOW, DAY, READ)
    subject, body = findings_digest("idle-resources", t, "http://ui/runs/flow-run/1")
    assert subject == "[idle-resources] 2 new"
    assert "vol-a" in body and "$8.00/mo" in body and "$10.50/mo in total" in body
    assert body.endswith("Run: http://ui/runs/flow-run/1")


def test_digest_of_a_dry_run_says_what_apply_would_change():
    t = diff_findings({}, [finding("vol-a", cost=8.0)], NOW, DAY, READ)
    _, body = findings_digest("idle-resources", t, planned=["would delete vol-a (123/eu-west-1): saves $8.00/mo"])
    assert "Would change (dry run: with apply, each waits for approval) (1):\n• would delete vol-a" in body
    _, quiet = findings_digest("idle-resources", t)
    assert "Would change" not in quiet


def test_digest_caps_long_lists():
    many = [finding(f"vol-{i}") for i in range(100)]
    _, body = findings_digest("idle", diff_findings({}, many, NOW, DAY, READ))
    assert "… and 75 more" in body


def test_failure_message_has_error_logs_and_redacts_secrets():
    subject, body = flow_failure_message(
        flow_name="f", flow_run_name="r", state_name="Failed",
        state_message="ValueError: posting to https://chat.example/x?key=K1&token=T1 failed",
        log_lines=["line 1", "password=hunter2 used"], parameters={"days": 3},
        secrets=("hunter2",),
    )
    assert subject == "[f] run r Failed"
    assert "line 1" in body and "days=3" in body
    for secret in ("K1", "T1", "hunter2"):
        assert secret not in body


def test_redact_and_mask():
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert mask_sql_literals("select * from t where name = 'bob''s' and id = 42") == (
        "select * from t where name = '?' and id = ?"
    )


def test_masking_keeps_names_and_column_positions():
    sql = ("select region, sum(v2) from `shop-123.sales_2024.orders` o join \"t 7\" x on o.id = x.id "
           "where o.day > '2026-01-01' and o.qty >= 3.5 group by 1, 2 order by 2 desc limit 10")
    assert mask_sql_literals(sql) == (
        "select region, sum(v2) from `shop-123.sales_2024.orders` o join \"t 7\" x on o.id = x.id "
        "where o.day > '?' and o.qty >= ? group by 1, 2 order by 2 desc limit ?")


def test_only_targets_read_can_resolve():
    here = finding("vol-a")  # scope 111/us-east-1
    elsewhere = Finding(kind="idle-volume", resource_id="vol-b", scope="222/eu-west-1", reason="x")
    known_ = {f.key: known(f, NOW) for f in (here, elsewhere)}
    # Another deployment of the job reads only eu-west-1: it never resolves us-east-1's findings.
    assert diff_findings(known_, [], NOW, DAY, Coverage({"222/eu-west-1"})).resolved == [elsewhere.key]
    failed = Coverage({"111/us-east-1", "222/eu-west-1"})
    failed.fail("111/us-east-1", "AccessDenied")
    assert diff_findings(known_, [], NOW, DAY, failed).resolved == [elsewhere.key]
    nothing = Coverage()
    nothing.fail("credentials' account", "ExpiredToken")
    assert nothing.nothing_read and diff_findings(known_, [], NOW, DAY, nothing).resolved == []
    logs_only = Coverage({"111/us-east-1", "222/eu-west-1"})
    logs_only.fail("111/us-east-1", "logs: denied", {"lambda-timeouts"})
    assert diff_findings(known_, [], NOW, DAY, logs_only).resolved == sorted(known_)


def test_a_failed_resource_prefix_keeps_only_those_findings_open():
    bucket = Finding(kind="stale-objects", resource_id="s3://logs/tmp/", scope="111/us-east-1", reason="x")
    other_bucket = Finding(kind="stale-objects", resource_id="s3://logs2/", scope="111/us-east-1", reason="x")
    volume = finding("vol-a")  # same account and region
    known_ = {f.key: known(f, NOW) for f in (bucket, other_bucket, volume)}
    listing_failed = Coverage({"111/us-east-1"})
    listing_failed.fail("111/us-east-1", "ListBuckets denied", {"stale-objects"})
    assert diff_findings(known_, [], NOW, DAY, listing_failed).resolved == [volume.key]
    one_bucket_failed = Coverage({"111/us-east-1"})
    one_bucket_failed.fail("111/us-east-1", "denied", {"stale-objects"}, "s3://logs/")
    assert diff_findings(known_, [], NOW, DAY, one_bucket_failed).resolved == sorted([other_bucket.key, volume.key])
