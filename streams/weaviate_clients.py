"""Connecting to Weaviate the same way from every docstreams process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, TypeVar

import weaviate
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.exceptions import WeaviateBaseError

from streams.errors import DownstreamUnavailable
from streams.settings import IndexSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


def connect_weaviate(settings: IndexSettings) -> weaviate.WeaviateClient:
    key = settings.weaviate_api_key
    return weaviate.connect_to_custom(
        http_host=settings.weaviate_host,
        http_port=settings.weaviate_http_port,
        http_secure=settings.weaviate_secure,
        grpc_host=settings.weaviate_host,
        grpc_port=settings.weaviate_grpc_port,
        grpc_secure=settings.weaviate_secure,
        auth_credentials=Auth.api_key(key.get_secret_value()) if key else None,
        additional_config=AdditionalConfig(timeout=Timeout(init=10, query=30, insert=60)),
        # Without it the client asks PyPI for its latest version on every connect.
        skip_init_checks=True,
    )


# How long a tenant seen to exist is taken to exist without asking Weaviate again.
TENANT_RECHECK_S = 60.0


class WeaviateAdapter:
    """Base of the Weaviate adapters: one client per adapter, connected on first use (an
    unreachable server is back-pressure, not an error), closed with the adapter."""

    settings: IndexSettings

    @cached_property
    def client(self) -> weaviate.WeaviateClient:
        try:
            return connect_weaviate(self.settings)
        except WeaviateBaseError as exc:
            raise DownstreamUnavailable(f"weaviate unreachable: {exc}", 5.0) from None

    @cached_property
    def _tenants_seen(self) -> dict[tuple[str, str], float]:
        """(collection, tenant) -> when it was last seen to exist."""
        return {}

    def prepare(self) -> None:
        """Connect and make the collections now, at the stage's start, so the first document
        does not wait for it; a Weaviate that is down then is left to the first use."""
        try:
            self._ensure_collections()
        except (WeaviateBaseError, DownstreamUnavailable) as exc:
            log.warning("weaviate not ready at start (%s): connecting on first use", exc)

    def insert_in_slices(
        self, collection: Any, items: Sequence[T], to_object: Callable[[T], Any]
    ) -> dict[int, Any]:
        """Insert ``items`` as objects, WEAVIATE_INSERT_OBJECTS per request; the errors by the
        item's index. In slices: the client holds each object twice more (request objects,
        protobuf), so thousands of objects at once would be three times in memory."""
        refused: dict[int, Any] = {}
        step = self.settings.weaviate_insert_objects
        for start in range(0, len(items), step):
            result = collection.data.insert_many(
                [to_object(item) for item in items[start : start + step]]
            )
            refused.update({start + i: error for i, error in result.errors.items()})
        return refused

    def _ensure_collections(self) -> None:
        """Create this adapter's collections if missing (each adapter says which)."""

    def tenant_exists(self, collection: str, tenant_id: str) -> bool:
        """Whether ``collection`` has ``tenant_id`` (reading a tenant never written is an error
        in Weaviate, not an empty result). One seen is taken to exist for TENANT_RECHECK_S:
        tenants are made on first write and the product never removes one, and the question
        was a REST call per embed batch and several per document in the tracker; asking again
        after a while still notices a tenant an operator removed."""
        seen, key, now = self._tenants_seen, (collection, tenant_id), time.monotonic()
        if now - seen.get(key, -TENANT_RECHECK_S) < TENANT_RECHECK_S:
            return True
        found = self.client.collections.use(collection).tenants.exists(tenant_id)
        if found:
            seen[key] = now
        return bool(found)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
