"""What a batch produces: encoded outputs, refusals, dead letters (no Kafka needed)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from streams.errors import DocstreamsError, PoisonInput
from streams.messages import Chunk, ChunkBatch, DeadLetter, DocumentFailed, Page, PageBatch
from streams.pipeline import STAGE_SPECS
from streams.runner.batch import OutputEncoder, Outputs
from streams.runner.dead_letters import dead_letter
from streams.settings import Settings

SETTINGS = Settings(topic_prefix="unit.")
WINDOW: dict[str, Any] = {"tenant_id": "t1", "document_id": "d1", "version": "ab" * 32, "window": 2,
          "window_count": 3, "content_type": "text/plain"}  # fmt: skip


class FakeRecord:
    """The few accessors of a consumed record the dead-letter builder reads."""

    def __init__(self, value: bytes | None, key: bytes | None = b"d1") -> None:
        self._value, self._key = value, key

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return "unit.pages"

    def partition(self) -> int:
        return 4

    def offset(self) -> int:
        return 17


def _chunks(text: str) -> ChunkBatch:
    chunk = Chunk(id="c", index=0, text=text, page_start=1, page_end=1, tokens=1)
    return ChunkBatch(**WINDOW, chunks=[chunk])


def test_outputs_are_encoded_for_their_prefixed_topic_and_counted_per_kind() -> None:
    outputs = Outputs(OutputEncoder(SETTINGS, STAGE_SPECS["chunk"].outputs))
    outputs.add([_chunks("hello")])
    (record,) = outputs.records
    assert record.topic == "unit.chunks" and record.key == b"t1/d1:2"  # work spreads by window
    assert ChunkBatch.from_wire(record.value).chunks[0].text == "hello"
    assert outputs.per_topic() == {("unit.chunks", "ChunkBatch"): 1}


def test_an_output_over_its_topics_limit_refuses_the_input_and_keeps_none_of_its_outputs() -> None:
    outputs = Outputs(OutputEncoder(SETTINGS, STAGE_SPECS["chunk"].outputs))
    with pytest.raises(PoisonInput, match=r"over unit\.chunks's limit"):
        outputs.add([_chunks("small"), _chunks("x" * (9 * 2**20))])
    assert outputs.records == []  # all of an input's outputs, or none


def test_an_output_to_a_topic_the_stage_does_not_declare_is_refused() -> None:
    outputs = Outputs(OutputEncoder(SETTINGS, STAGE_SPECS["index"].outputs))
    with pytest.raises(DocstreamsError, match="does not name"):
        outputs.add([_chunks("index writes no chunks")])


def test_a_dead_letter_carries_the_original_record_and_fails_its_document() -> None:
    value = PageBatch(**WINDOW, pages=[Page(number=1, text="x")]).to_wire()
    letter, failed = dead_letter("chunk", FakeRecord(value), PoisonInput("bad page"), attempts=1)  # type: ignore[arg-type]
    assert isinstance(letter, DeadLetter) and isinstance(failed, DocumentFailed)
    assert (letter.stage, letter.reason, letter.error_class) == ("chunk", "bad page", "PoisonInput")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "unit.pages",
        4,
        17,
    )
    assert base64.b64decode(letter.original_value or "") == value
    assert (failed.document_id, failed.version, failed.window) == ("d1", WINDOW["version"], 2)


@pytest.mark.parametrize("value", [b"\xff not json", b"[1, 2]", None])
def test_a_record_without_a_document_gets_a_dead_letter_only(value: Any) -> None:
    letters = dead_letter("chunk", FakeRecord(value), ValueError("?"), attempts=3)  # type: ignore[arg-type]
    assert [type(m) for m in letters] == [DeadLetter]
    assert letters[0].attempts == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("message", "public"),
    [
        ("not a readable audio/video file: /srv/blobs/objects/acme/ab12/9f: Invalid data",
         "not a readable audio/video file: <path>: Invalid data"),
        ("FileNotFoundError: [Errno 2] No such file or directory: '/etc/docstreams/x.pdf'",
         "FileNotFoundError: [Errno 2] No such file or directory: '<path>'"),
        ("KeyError in (~/venv/lib/python3.11/site-packages/pypdf/_page.py)",
         "KeyError in (<path>)"),
        ("Traceback (most recent call last):\n  File \"/app/x.py\", line 3\nValueError: bad xref",
         "ValueError: bad xref"),
        ("https://u:p@files.example.com/r.pdf?X-Amz-Signature=abc123&id=7: HTTP 404",
         "https://***@files.example.com/r.pdf?X-Amz-Signature=***&id=***: HTTP 404"),
        ("openai refused: Incorrect API key provided: sk-proj-abcdef123456",
         "openai refused: Incorrect API key provided: sk-***"),
        ("refused redirect to 'file:///etc/passwd'", "refused redirect to 'file://<path>'"),
        # what must stay: content types, ratios, URLs' own paths, page ranges
        ("the request says application/pdf but the bytes are text/html",
         "the request says application/pdf but the bytes are text/html"),
        ("https://example.com/docs/r.pdf: HTTP 410 Gone",
         "https://example.com/docs/r.pdf: HTTP 410 Gone"),
        ("resource_limit: memory: extracting pages 1-25: 3/4 of 512 MB",
         "resource_limit: memory: extracting pages 1-25: 3/4 of 512 MB"),
    ],
)  # fmt: skip
def test_a_reason_names_the_problem_without_server_paths_tracebacks_or_credentials(
    message: str, public: str
) -> None:
    value = PageBatch(**WINDOW, pages=[Page(number=1, text="x")]).to_wire()
    letter, failed = dead_letter("extract", FakeRecord(value), PoisonInput(message), attempts=1)  # type: ignore[arg-type]
    assert letter.reason == failed.reason == public  # type: ignore[attr-defined]
