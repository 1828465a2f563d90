"""The raw tensor wire format shared by gRPC raw contents and the REST binary tensor data extension.

One buffer per tensor, row-major. BYTES elements are a 4-byte little-endian length followed by the
bytes; numeric tensors are little-endian with the item sizes of RAW_DTYPES.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from service.errors import InvalidInput

_LENGTH = struct.Struct("<I")
# datatype -> little-endian numpy dtype; BYTES is length-prefixed and handled apart.
RAW_DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = frozenset({"BYTES", *RAW_DTYPES})


def check_datatype(datatype: str, what: str) -> None:
    if datatype not in DATATYPES:
        raise InvalidInput(f"{what}: unknown datatype {datatype!r}")


def check_element_count(shape: Sequence[int], count: int, what: str) -> None:
    expected = math.prod(shape)
    if count != expected:
        raise InvalidInput(f"{what}: shape {list(shape)} needs {expected} elements, got {count}")


def bytes_elements_from_raw(buffer: bytes, what: str) -> list[bytes]:
    """Split a raw BYTES buffer into its length-prefixed elements."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(buffer):  # each pass consumes at least the 4-byte prefix
        if offset + _LENGTH.size > len(buffer):
            raise InvalidInput(f"{what}: raw BYTES buffer ends inside an element's length prefix")
        (size,) = _LENGTH.unpack_from(buffer, offset)
        offset += _LENGTH.size
        if offset + size > len(buffer):
            raise InvalidInput(f"{what}: raw BYTES element of {size} bytes overruns the buffer")
        elements.append(bytes(buffer[offset : offset + size]))
        offset += size
    return elements


def bytes_elements_to_raw(elements: Iterable[str | bytes]) -> bytes:
    parts = []
    for element in elements:
        data = element.encode("utf-8") if isinstance(element, str) else bytes(element)
        parts.append(_LENGTH.pack(len(data)) + data)
    return b"".join(parts)


def data_from_raw(datatype: str, buffer: bytes, what: str) -> list[Any]:
    """Flat elements of one raw buffer: BYTES as bytes, numbers as Python numbers."""
    check_datatype(datatype, what)
    if datatype == "BYTES":
        return list(bytes_elements_from_raw(buffer, what))
    dtype = np.dtype(RAW_DTYPES[datatype])
    if len(buffer) % dtype.itemsize:
        raise InvalidInput(f"{what}: raw buffer of {len(buffer)} bytes is not a whole number of {datatype}")
    return list(np.frombuffer(buffer, dtype=dtype).tolist())


def data_to_raw(datatype: str, data: Iterable[Any]) -> bytes:
    """One raw buffer from flat elements (BYTES elements as str, encoded UTF-8, or bytes)."""
    if datatype == "BYTES":
        return bytes_elements_to_raw(data)
    return np.asarray(list(data), dtype=RAW_DTYPES[datatype]).tobytes()
