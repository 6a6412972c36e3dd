"""Embedding vectors as ``array('f')``: float32, without numpy.

numpy is ~15 MB in every process that imports it; the stages that only move vectors (decode,
normalise, encode, hand to Weaviate) do without it. Only the local embedder, which runs a
model, uses numpy, and turns its rows into these.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable
from typing import TypeAlias

# Of typecode "f": 4-byte IEEE floats on every platform Python supports.
Vector: TypeAlias = "array[float]"
if array("f").itemsize != 4:  # pragma: no cover  (no such platform known)
    raise ImportError("array('f') is not float32 here")


def vector(values: Iterable[float]) -> array[float]:
    return values if isinstance(values, array) and values.typecode == "f" else array("f", values)


def from_le_bytes(data: bytes) -> array[float]:
    """Little-endian float32 bytes (the wire format, OpenAI's base64) as a vector."""
    values = array("f")
    values.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return values


def to_le_bytes(values: array[float]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover
        values = array("f", values)
        values.byteswap()
    return values.tobytes()


_UNIT = 1e-6  # float32 rounding leaves a unit vector's length this close to 1


def normalised(values: array[float]) -> array[float]:
    """Scaled to unit L2 length (left as it is if it is all zeros or of unit length already)."""
    norm = math.hypot(*values)
    if norm <= 1e-12 or abs(norm - 1.0) <= _UNIT:
        return values  # all zeros, or unit length already (OpenAI's are): no copy
    return array("f", [x / norm for x in values])
