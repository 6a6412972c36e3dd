"""JSON Schemas of every docstreams message, generated from `streams.messages` into `schemas/`.

The directory ships inside the wheel as the package ``streams_schemas`` (see pyproject), so
other producers and consumers — in any language — validate against exactly these files.
`docstreams schemas export` rewrites them; a test fails when they fall behind the models.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker

from streams.errors import DocstreamsError
from streams.messages import WIRE_TYPES, Message

_SCHEMA_PACKAGE = "streams_schemas"
_SUFFIX = ".schema.json"


class InvalidMessage(DocstreamsError):
    """A message that does not match its schema; the text names the field and the rule."""


def file_name(message_type: str) -> str:
    """ "DocumentSubmitted" -> "document_submitted.schema.json"."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", message_type).lower() + _SUFFIX


def schema_of(model: type[Message]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:docstreams:schema:{file_name(model.__name__).removesuffix(_SUFFIX)}",
        **schema,
    }


def render(model: type[Message]) -> bytes:
    return orjson.dumps(schema_of(model), option=orjson.OPT_INDENT_2) + b"\n"


def export_schemas(directory: Path) -> list[Path]:
    """Write one schema file per wire message type; returns the files written."""
    written = []
    for model in WIRE_TYPES:
        path = directory / file_name(model.__name__)
        path.write_bytes(render(model))
        written.append(path)
    return written


def message_types() -> list[str]:
    """Every message type with a schema file shipped, by its `title`."""
    found = [p for p in files(_SCHEMA_PACKAGE).iterdir() if p.name.endswith(_SUFFIX)]
    return [str(orjson.loads(p.read_bytes())["title"]) for p in sorted(found, key=lambda p: p.name)]


@cache
def validator(message_type: str) -> Draft202012Validator:
    resource = files(_SCHEMA_PACKAGE).joinpath(file_name(message_type))
    if not resource.is_file():
        raise InvalidMessage(f"no schema for message type {message_type!r}")
    schema = orjson.loads(resource.read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def validate(message_type: str, payload: Any) -> None:
    """Raise InvalidMessage with every violation, each with its JSON path."""
    errors = sorted(validator(message_type).iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(f"{e.json_path}: {e.message}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise InvalidMessage(f"{message_type} does not match its schema: {details}{more}")
