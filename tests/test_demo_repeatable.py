"""The demo gives the same findings on every run: everything is seeded at, and every job runs
at, one pinned time, so how long each job (or the machine) takes changes nothing.

The jobs here are those whose findings depend on time windows (metrics, job history, freshness);
the second demo starts its jobs 20 s later after seeding, as a slower machine would.
Costly (two demos with six jobs each): about 2 min on an idle machine.
"""

from __future__ import annotations

import time

from deployments.demo import DEMO_JOBS, run_demo

TIMED = ("lambda-health", "queue-health", "redshift-health", "bigquery-query-cost-watch", "data-integrity",
         "snowflake-query-cost-watch")


def _totals(delay: float) -> dict[str, tuple[str, int, float]]:
    waited = []

    def out(line: str) -> None:
        if line.startswith("▶") and not waited:
            waited.append(delay)
            time.sleep(delay)  # the jobs start later after seeding: the pinned time must not care

    summary = run_demo(jobs={name: DEMO_JOBS[name] for name in TIMED}, seed_scale=1, out=out)
    return {r.job: (r.status, r.findings, r.monthly_usd) for r in summary.results if r.status != "skipped"}


def test_the_demo_twice_gives_the_same_findings():
    first, second = _totals(0), _totals(20)
    assert set(first) == set(TIMED) and all(status == "Completed" for status, _, _ in first.values()), first
    assert all(findings for _, findings, _ in first.values()), first  # each job found its planted trouble
    assert second == first
