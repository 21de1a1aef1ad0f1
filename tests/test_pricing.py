"""The bundled price table and the $/month arithmetic."""

import pytest

from rules.pricing import (
    BUNDLED,
    PriceTable,
    ebs_volume_monthly,
    hourly_monthly,
    public_ipv4_monthly,
    s3_monthly,
)


def test_public_ipv4_is_365_cents_a_month():
    assert public_ipv4_monthly(BUNDLED, "us-east-1").usd == pytest.approx(3.65)


def test_gp3_extras_and_io1_iops():
    assert ebs_volume_monthly(BUNDLED, "us-east-1", "gp3", 100).usd == pytest.approx(8.0)
    # 100 GB + 1,000 IOPS and 125 MB/s above the free baseline
    assert ebs_volume_monthly(BUNDLED, "us-east-1", "gp3", 100, 4000, 250).usd == pytest.approx(18.0)
    assert ebs_volume_monthly(BUNDLED, "us-east-1", "io1", 100, 1000).usd == pytest.approx(77.5)


def test_regional_price_and_estimated_fallback():
    seoul = ebs_volume_monthly(BUNDLED, "ap-northeast-2", "gp2", 100)
    assert seoul.usd == pytest.approx(11.4) and not seoul.estimated
    unknown = hourly_monthly(BUNDLED, "sa-east-1", "ec2:m5.large:hour")
    assert unknown.estimated and unknown.usd == pytest.approx(70.08)


def test_overrides_win_and_unknown_keys_fail_loudly():
    table = PriceTable(overrides={"us-east-1": {"s3:STANDARD:gb": 0.02}})
    assert s3_monthly(table, "us-east-1", "STANDARD", 1024**3 * 10).usd == pytest.approx(0.2)
    with pytest.raises(KeyError, match="ec2:z9.huge:hour"):
        hourly_monthly(table, "us-east-1", "ec2:z9.huge:hour")
