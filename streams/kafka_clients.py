"""Kafka client configuration shared by every docstreams process."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka.admin import AdminClient

from streams.settings import Settings


def base_config(settings: Settings) -> dict[str, Any]:
    """Settings common to admin, producer and consumer clients."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        # librdkafka logs through Python logging instead of writing to stderr.
        "logger": logging.getLogger("docstreams.kafka"),
    }


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(base_config(settings))
