"""The bundled price table and the $/month arithmetic; a failing Pricing API; the refresh the cost
jobs share, kept a week per job."""

import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prefect_aws import AwsCredentials

import tasks.aws.pricing as pricing
from blocks.store import OpsStore
from rules.config import PricedPolicy
from rules.pricing import (
    BUNDLED,
    PriceTable,
    ebs_volume_monthly,
    hourly_monthly,
    public_ipv4_monthly,
    s3_monthly,
)
from tasks.aws.clients import Account, error_summary
from tasks.aws.pricing import refresh_price_table, refreshed_prices
from tasks.runner import AwsTarget, RunContext


def test_public_ipv4_is_365_cents_a_month():
    assert public_ipv4_monthly(BUNDLED, "us-east-1").usd == pytest.approx(3.65)


def test_gp3_extras_and_io1_iops():
    assert ebs_volume_monthly(BUNDLED, "us-east-1", "gp3", 100).usd == pytest.approx(8.0)
    # 100 GB + 1,000 IOPS and 125 MB/s above the free baseline
    assert ebs_volume_monthly(BUNDLED, "us-east-1", "gp3", 100, 4000, 250).usd == pytest.approx(18.0)
    assert ebs_volume_monthly(BUNDLED, "us-east-1", "io1", 100, 1000).usd == pytest.approx(77.5)


def test_us_east_1_figures_match_the_recorded_price_list():
    """The infracost golden files rules/pricing.py names, line by line (quantity x unit price)."""
    ebs = {  # ebs_volume_test.golden
        ("gp2", 10, None): 1.00, ("standard", 20, None): 1.00, ("st1", 40, None): 1.80,
        ("sc1", 50, None): 0.75, ("io1", 30, 300): 3.75 + 19.50, ("io2", 30, 300): 3.75 + 19.50,
    }
    for (vtype, size, iops), usd in ebs.items():
        assert ebs_volume_monthly(BUNDLED, "us-east-1", vtype, size, iops).usd == pytest.approx(usd)
    # gp3 40 GB $3.20, 1,000 IOPS above the free 3,000 $5.00, 5 MB/s above 125 $0.20 (that volume sits
    # in us-west-2, whose EBS prices are us-east-1's)
    assert ebs_volume_monthly(BUNDLED, "us-east-1", "gp3", 40, 4000, 130).usd == pytest.approx(8.40)
    # redshift_cluster_test.golden: 2,920 h of dc2.large, 4,380 h of ra3.4xlarge, 730 h of ra3.16xlarge
    for node, hours, usd in (("dc2.large", 2920, 730.00), ("ra3.4xlarge", 4380, 14_278.80),
                             ("ra3.16xlarge", 730, 9_519.20)):
        assert hourly_monthly(BUNDLED, "us-east-1", f"redshift:{node}:hour", hours).usd == pytest.approx(usd)


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


class _ErrorPage(BaseHTTPRequestHandler):
    """What a proxy in front of the Pricing API may answer: 503 with an HTML page."""

    page = b"<html><head><title>503 Service Unavailable</title></head><body>" + b"<p>busy</p>\n" * 200 + b"</body></html>"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args) -> None:
        pass


def test_a_failing_pricing_api_costs_seconds_and_one_plain_line():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ErrorPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    creds = AwsCredentials(region_name="us-east-1",
                           aws_client_parameters={"endpoint_url": f"http://127.0.0.1:{server.server_address[1]}"})
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as err:
            refresh_price_table.fn(Account(creds), ["ap-northeast-2"])
    finally:
        server.shutdown()
    assert time.monotonic() - started < 5  # the adaptive retries took 34 s here
    line = error_summary(err.value)
    assert "\n" not in line and "<p>" not in line and len(line) <= 500, line


def test_refreshed_prices_are_kept_a_week_per_job_for_the_regions_read(monkeypatch, tmp_path):
    fetched: list[list[str]] = []

    def refresh(account, regions):
        fetched.append(regions)
        return BUNDLED.model_copy(update={"as_of": "AWS Pricing API", "overrides": {r: {} for r in regions}})

    monkeypatch.setattr(pricing, "refresh_price_table", refresh)
    store, now = OpsStore(url=f"sqlite:///{tmp_path / 'store.db'}"), datetime(2026, 12, 1, tzinfo=timezone.utc)

    def run(job: str, regions: list[str], at: datetime, policy=PricedPolicy()) -> tuple:  # noqa: B008
        table, notes = refreshed_prices([AwsTarget(None, "1", r) for r in regions], policy,
                                        RunContext(job, at, store, apply=False))
        return table.as_of, notes

    assert run("ebs-rightsizing", ["us-east-1"], now) == ("AWS Pricing API", [])
    assert run("ebs-rightsizing", ["us-east-1"], now + timedelta(days=6)) == ("AWS Pricing API", [])
    assert fetched == [["us-east-1"]]  # kept: one fetch in six days
    run("ebs-rightsizing", ["eu-west-1"], now + timedelta(days=6))  # another deployment's region: both
    run("ebs-rightsizing", ["us-east-1"], now + timedelta(days=6))
    run("waste-checks", ["us-east-1"], now)  # each job keeps its own
    run("ebs-rightsizing", ["us-east-1"], now + timedelta(days=13))  # a week old: fetched again
    assert fetched == [["us-east-1"], ["eu-west-1", "us-east-1"], ["us-east-1"], ["us-east-1"]]
    assert run("graviton-advisor", ["us-east-1"], now, PricedPolicy(refresh_prices=False)) == (BUNDLED.as_of, [])

    def denied(account, regions):
        raise PermissionError("pricing:GetProducts")

    monkeypatch.setattr(pricing, "refresh_price_table", denied)
    as_of, [note] = run("compute-rightsizing", ["us-east-1"], now)
    assert as_of == BUNDLED.as_of and note.startswith("Bundled list prices used: Pricing API unavailable (")
