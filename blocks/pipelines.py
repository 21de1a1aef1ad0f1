"""Pipeline declarations for the data-integrity flow, kept in a block instead of the repo."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field


class IntegrityPipelines(Block):
    """The same list as `pipelines:` in a pipelines YAML file, editable in the Prefect UI.

    The list is validated when the flow runs (errors name the pipeline and the field), so a
    bad entry never half-runs.

    Example:
        ```python
        from blocks.pipelines import IntegrityPipelines

        IntegrityPipelines(pipelines=[{"name": "orders", "target": {
            "connection": "analytics", "table": "raw.orders"}}]).save("integrity-pipelines")
        ```
    """

    _block_type_name = "Integrity Pipelines"
    _block_type_slug = "integrity-pipelines"
    _description = "Source/target pipelines checked by the dataplatform-ops data-integrity flow."

    pipelines: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Pipelines as in the YAML file: name, owner, source, target (postgres, bigquery or "
                    "snowflake), tolerances.",
    )
