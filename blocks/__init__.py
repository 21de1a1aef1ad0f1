"""Blocks of the dataplatform-ops collection; importing this module registers them with Prefect."""

from blocks.google_chat import GoogleChatWebhook
from blocks.pipelines import IntegrityPipelines
from blocks.store import OpsStore
from blocks.warehouse import WarehouseConnection

__all__ = ["GoogleChatWebhook", "IntegrityPipelines", "OpsStore", "WarehouseConnection"]
