"""Flows as another team writes them: no hook of ours, no tag of ours. Their runs execute in
runner subprocesses, which import this module by path."""

from __future__ import annotations

import os
import signal
import threading

from prefect import flow, get_run_logger, task
from prefect.logging.handlers import APILogHandler

from tasks.notify import on_flow_failure


@task(retries=1, retry_delay_seconds=0)
def load_customers(day: str) -> None:
    get_run_logger().info("copying customers for %s into the warehouse", day)
    raise ConnectionError("warehouse refused the connection: too many clients")


@flow(name="crm-sync")
def crm_sync(day: str, api_token: str) -> None:
    get_run_logger().info("crm sync started")
    load_customers(day)


@flow(name="crm-export")
def crm_export() -> None:
    get_run_logger().info("exported 1200 of 5000 rows")
    APILogHandler().flush()  # what reached the API before the kill; a real OOM kill may lose ~2 s
    os.kill(os.getpid(), signal.SIGKILL)


@flow(name="crm-hooked", on_failure=[on_flow_failure])
def crm_hooked() -> None:
    """A team that adopted our hook: its hook announces the run, the report must not."""
    raise ValueError("bad row 17")


@task(retries=1, retry_delay_seconds=0)
def refresh_thumbnails() -> None:
    get_run_logger().info("refreshing thumbnails")
    raise TimeoutError("image service did not answer")


@flow(name="crm-best-effort")
def crm_best_effort() -> str:
    """The flow carries on when its optional task fails."""
    refresh_thumbnails(return_state=True)
    return "done"


RELEASE_WAREHOUSE_LOAD = threading.Event()  # set by a test to end a held run at once


@flow(name="warehouse-load")
def warehouse_load(hold: bool = False) -> None:
    """A load that usually takes a moment; held (in-process runs only), it runs until released."""
    get_run_logger().info("loading the warehouse")
    if hold:
        RELEASE_WAREHOUSE_LOAD.wait(timeout=120)
