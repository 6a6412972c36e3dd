"""JSON Schemas of every docstreams message (the top-level `schemas/` directory).

The directory is shipped inside the wheel as the package ``streams_schemas`` (see pyproject), so
an installed docstreams validates with exactly the files in the repository.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker

from streams.errors import DocstreamsError

_SCHEMA_PACKAGE = "streams_schemas"
_SUFFIX = ".schema.json"


class InvalidMessage(DocstreamsError):
    """A message that does not match its schema; the text names the field and the rule."""


def _file_name(message_type: str) -> str:
    # "DocumentSubmitted" -> "document_submitted.schema.json"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", message_type).lower() + _SUFFIX


def message_types() -> list[str]:
    """Every message type with a schema file, by its `title`."""
    names = sorted(p.name for p in files(_SCHEMA_PACKAGE).iterdir() if p.name.endswith(_SUFFIX))
    return [
        str(orjson.loads(files(_SCHEMA_PACKAGE).joinpath(n).read_bytes())["title"]) for n in names
    ]


@cache
def validator(message_type: str) -> Draft202012Validator:
    resource = files(_SCHEMA_PACKAGE).joinpath(_file_name(message_type))
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
