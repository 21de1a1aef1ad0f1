"""Blocks of the dataplatform-ops collection; importing this module registers them with Prefect."""

from blocks.google_chat import GoogleChatWebhook
from blocks.store import OpsStore
from blocks.warehouse import WarehouseConnection

__all__ = ["GoogleChatWebhook", "OpsStore", "WarehouseConnection"]
