"""Wire format: orjson bytes, strict models, base64 float32 vectors, keys that spread windows."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from streams.messages import (
    Chunk,
    ChunkBatch,
    DeadLetter,
    DocumentSubmitted,
    EmbeddedChunk,
    InvalidWireMessage,
    VectorBatch,
    decode_vector,
    encode_vector,
)
from streams.schemas import validate

VERSION = "ab" * 32


def _chunk_batch(window: int) -> ChunkBatch:
    chunk = Chunk(
        id="00000000-0000-5000-8000-000000000000",
        index=0,
        text="hello",
        page_start=1,
        page_end=2,
        tokens=1,
    )
    return ChunkBatch(
        tenant_id="t1",
        document_id="doc-1",
        version=VERSION,
        window=window,
        window_count=3,
        chunks=[chunk],
        content_type="application/pdf",
    )


def test_a_message_survives_the_wire_and_matches_its_published_schema() -> None:
    batch = _chunk_batch(1)
    wire = batch.to_wire()
    assert ChunkBatch.from_wire(wire) == batch
    validate("ChunkBatch", orjson.loads(wire))


def test_vectors_travel_as_base64_float32_exactly() -> None:
    values = np.array([0.1, -2.5, 3.25e-8, 1.0], dtype=np.float32)
    encoded = encode_vector(values)
    assert len(encoded) == 24  # 16 bytes of float32, base64
    np.testing.assert_array_equal(decode_vector(encoded), values)
    chunk = EmbeddedChunk(**_chunk_batch(0).chunks[0].model_dump(), vector=encoded)
    batch = VectorBatch(
        tenant_id="t1",
        document_id="d",
        version=VERSION,
        window=0,
        window_count=1,
        model="m",
        dimensions=4,
        chunks=[chunk],
        content_type="text/plain",
    )
    np.testing.assert_array_equal(
        VectorBatch.from_wire(batch.to_wire()).chunks[0].vector_values(), values
    )


def test_windows_of_one_document_get_distinct_keys_and_events_share_one() -> None:
    keys = {_chunk_batch(w).kafka_key() for w in range(3)}
    assert len(keys) == 3
    submitted = DocumentSubmitted(tenant_id="t1", document_id="doc-1", source="https://x/y")
    assert submitted.kafka_key() == b"t1/doc-1"


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"{not json", "not JSON"),
        (None, "empty record"),
        (b'{"type": "DocumentSubmitted", "tenant_id": "t", "document_id": "d"}', "source"),
        (
            b'{"type":"DocumentSubmitted","tenant_id":"t","document_id":"d","source":"s","x":1}',
            "Extra inputs are not permitted",
        ),
    ],
)
def test_bad_bytes_raise_one_error_type_naming_the_problem(wire: bytes | None, why: str) -> None:
    with pytest.raises(InvalidWireMessage, match=why):
        DocumentSubmitted.from_wire(wire)


def test_dead_letter_carries_the_original_record() -> None:
    letter = DeadLetter(
        stage="extract",
        reason="encrypted PDF",
        error_class="PoisonInput",
        attempts=1,
        source_topic="docs.extract-tasks",
        source_partition=3,
        source_offset=17,
        original_value="e30=",
    )
    validate("DeadLetter", orjson.loads(letter.to_wire()))
    assert DeadLetter.from_wire(letter.to_wire()).original_value == "e30="
