"""rules/idle.py without I/O: records in, findings and plans out, with a fixed `now`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from rules.idle import (
    ORIGIN_VOLUME_TAG,
    UNATTACHED_VOLUME,
    IdlePolicy,
    ObjectTally,
    find_orphaned_snapshots,
    find_stale_objects,
    find_unattached_volumes,
    lifecycle_covers,
    plan_actions,
)
from rules.pricing import BUNDLED
from tasks.aws.ec2 import Snapshot, Volume

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def _volume(**kw) -> Volume:
    base = dict(volume_id="vol-1", region="us-east-1", volume_type="gp2", size_gb=100, state="available",
                create_time=NOW - timedelta(days=30))
    return Volume(**{**base, **kw})


@pytest.mark.parametrize(("rules", "prefix", "covered"), [
    ([{"ID": "all", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}], "tmp/", "all"),
    ([{"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
       "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}], "tmp/x/", "tmp"),
    ([{"ID": "legacy", "Status": "Enabled", "Prefix": "tmp/", "Expiration": {"Days": 3}}], "tmp/", "legacy"),
    ([{"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}], "tmp/", None),
    ([{"ID": "other", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 3}}], "tmp/", None),
    # A rule that also filters on tags covers only some objects.
    ([{"ID": "tagged", "Status": "Enabled", "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "a", "Value": "b"}]}},
       "Expiration": {"Days": 3}}], "tmp/", None),
    ([{"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": ""},
       "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}], "tmp/", None),
])
def test_lifecycle_coverage(rules, prefix, covered):
    assert lifecycle_covers(rules, prefix) == covered


def test_volume_age_state_and_opt_out():
    policy = IdlePolicy()
    volumes = [_volume(volume_id="vol-idle"), _volume(volume_id="vol-used", state="in-use"),
               _volume(volume_id="vol-young", create_time=NOW - timedelta(days=2)),
               _volume(volume_id="vol-kept", tags={"dataplatform-ops:keep": ""}),
               _volume(volume_id="vol-custom", tags={"team:keep": "1"})]
    found = find_unattached_volumes(volumes, "1/us-east-1", policy, BUNDLED, {}, NOW)
    assert [f.resource_id for f in found] == ["vol-idle", "vol-custom"]
    assert found[0].monthly_cost_usd == pytest.approx(10.0)
    custom = IdlePolicy(opt_out_tag="team:keep")
    assert [f.resource_id for f in find_unattached_volumes(volumes, "1/us-east-1", custom, BUNDLED, {}, NOW)] == [
        "vol-idle", "vol-kept"]


def test_backup_snapshots_are_kept_for_their_retention():
    snap = Snapshot("snap-b", "us-east-1", "vol-gone", 10, NOW - timedelta(days=40), "completed",
                    tags={ORIGIN_VOLUME_TAG: "vol-gone"})
    policy = IdlePolicy(backup_retention_days=60)
    assert find_orphaned_snapshots([snap], set(), [], "s", policy, BUNDLED, {}, NOW) == []
    later = NOW + timedelta(days=21)
    assert len(find_orphaned_snapshots([snap], set(), [], "s", policy, BUNDLED, {}, later)) == 1


def test_grace_period_marks_first_and_offers_later():
    policy = IdlePolicy(grace_days=7)
    key = f"{UNATTACHED_VOLUME}|1/us-east-1|vol-1"
    fresh = find_unattached_volumes([_volume()], "1/us-east-1", policy, BUNDLED, {}, NOW)
    [marked] = plan_actions(fresh, policy, NOW)
    assert not marked.eligible and "eligible on 2026-12-02" in marked.detail
    seen_before = {key: NOW - timedelta(days=8)}
    old = find_unattached_volumes([_volume()], "1/us-east-1", policy, BUNDLED, seen_before, NOW)
    [offered] = plan_actions(old, policy, NOW)
    assert offered.eligible and offered.action == "snapshot-then-delete-volume"
    assert old[0].numbers["idle_days"] == 8 and "idle for 8 days" in old[0].reason


def test_stale_object_tally_prices_by_storage_class():
    tally = ObjectTally("b", "us-east-1", "tmp/", 30)
    tally.add(1024**3, NOW - timedelta(days=31), "STANDARD", NOW)
    tally.add(2 * 1024**3, NOW - timedelta(days=40), "GLACIER", NOW)
    tally.add(5 * 1024**3, NOW - timedelta(days=1), "STANDARD", NOW)  # young: not counted
    [finding] = find_stale_objects([tally], "1", BUNDLED, {}, NOW)
    assert finding.numbers["objects"] == 2
    assert finding.monthly_cost_usd == pytest.approx(0.023 + 2 * 0.0036)
    assert finding.numbers["proposed_rule"]["Expiration"] == {"Days": 30}
    assert finding.numbers["proposed_rule"]["Filter"] == {"Prefix": "tmp/"}


def test_policy_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValidationError):
        IdlePolicy(snapshot_min_days=3)
    with pytest.raises(ValidationError):
        IdlePolicy(grace_days=-1)
