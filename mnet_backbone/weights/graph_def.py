"""TensorFlow ``GraphDef`` files (``.pb``, or a release ``.tgz`` holding one), read without
TensorFlow or protobuf.

:func:`parse_graph_def` decodes the protobuf wire format with the few fields of TensorFlow's
``graph.proto`` / ``node_def.proto`` / ``attr_value.proto`` / ``tensor.proto`` a frozen graph's
weights need: each node's name, op, inputs and attributes, constants as NumPy arrays.
:func:`read_tf_graph` reads a ``.pb`` or picks the frozen graph inside a ``.tgz``. What the nodes
mean for MobileNetV1 is :mod:`mnet_backbone.weights.tf_graph`'s business.
"""
from __future__ import annotations

import os
import struct
import tarfile
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from .hub import CorruptWeightsError

__all__ = ["TF_GRAPH_SUFFIXES", "GraphNode", "OpaqueTensor", "parse_graph_def", "read_tf_graph",
           "is_tf_graph_path"]

# Detected by name; a ".tar" is read as a graph archive only with source="tf_graph" (PyTorch
# checkpoints are often saved as "*.pth.tar").
TF_GRAPH_SUFFIXES = (".pb", ".tgz", ".tar.gz")
_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")

# --- the protobuf wire format, and the fields of GraphDef this needs -----------------------------

_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_INT64 = 1, 2, 3, 9
_DTYPES = {_DT_FLOAT: np.float32, _DT_DOUBLE: np.float64, _DT_INT32: np.int32,
           _DT_INT64: np.int64}
_DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
                7: "string", 9: "int64", 10: "bool", 14: "bfloat16", 19: "float16"}


class _WireError(Exception):
    """Bytes that are not a well-formed protobuf message."""


def _varint(buf: memoryview, i: int) -> Tuple[int, int]:
    result = shift = 0
    n = len(buf)
    while True:
        if i >= n:
            raise _WireError("a number runs past the end of the data")
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise _WireError("a number longer than 10 bytes")


def _fields(buf: memoryview, with_end: bool = False):
    """``(field number, wire type, value)`` of one message: ints for varints, memoryviews for
    length-delimited fields, raw bytes for fixed32/64 (and the offset after it, ``with_end``)."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            if i + length > n:
                raise _WireError(f"field {number} claims {length} bytes but only {n - i} follow")
            value = buf[i:i + length]
            i += length
        elif wire == 5 or wire == 1:
            size = 4 if wire == 5 else 8
            if i + size > n:
                raise _WireError(f"field {number} runs past the end of the data")
            value = bytes(buf[i:i + size])
            i += size
        else:
            raise _WireError(f"wire type {wire} (field {number}) is not used by GraphDef")
        yield (number, wire, value, i) if with_end else (number, wire, value)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(view) -> str:
    return bytes(view).decode("utf8", errors="replace")


def _packed_varints(wire: int, value) -> List[int]:
    if wire == 0:
        return [_signed(value)]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(_signed(v))
    return out


def _packed_fixed(wire: int, value, fmt: str) -> List[float]:
    raw = bytes(value)
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))


def _shape(buf: memoryview) -> List[int]:
    dims = []
    for number, _, value in _fields(buf):
        if number == 2:  # TensorShapeProto.dim
            size = 0
            for n, _, v in _fields(value):
                if n == 1:
                    size = _signed(v)
            dims.append(size)
    return dims


def _tensor(buf: memoryview) -> np.ndarray:
    """A ``TensorProto`` (dtype 1, tensor_shape 2, tensor_content 4, float_val 5, double_val 6,
    int_val 7, int64_val 10) as an array; other dtypes keep their number (``.dtype_code``)."""
    dtype, shape, content, values = 0, [], None, []
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype = value
        elif number == 2:
            shape = _shape(value)
        elif number == 4:
            content = bytes(value)
        elif number == 5:
            values += _packed_fixed(wire, value, "f")
        elif number == 6:
            values += _packed_fixed(wire, value, "d")
        elif number in (7, 10):
            values += _packed_varints(wire, value)
    if dtype not in _DTYPES:
        return OpaqueTensor(dtype, shape)
    np_dtype = np.dtype(_DTYPES[dtype]).newbyteorder("<")
    size = int(np.prod(shape)) if shape else 1
    if content is not None:
        if len(content) != size * np_dtype.itemsize:
            raise _WireError(f"a tensor of shape {shape} holds {len(content)} bytes, expected "
                             f"{size * np_dtype.itemsize}")
        return np.frombuffer(content, dtype=np_dtype).astype(np_dtype.newbyteorder("="))\
            .reshape(shape)
    if not values:
        return np.zeros(shape, dtype=_DTYPES[dtype])
    if len(values) not in (1, size):
        raise _WireError(f"a tensor of shape {shape} holds {len(values)} values")
    array = np.array(values, dtype=_DTYPES[dtype])
    return (np.full(shape, array[0], dtype=array.dtype) if len(values) == 1 and size != 1
            else array.reshape(shape))


@dataclass
class OpaqueTensor:
    """A tensor of a dtype this reader does not decode (only its dtype and shape)."""

    dtype_code: int
    shape: List[int]

    @property
    def dtype_name(self) -> str:
        return _DTYPE_NAMES.get(self.dtype_code, f"dtype {self.dtype_code}")


def _attr_value(buf: memoryview):
    """An ``AttrValue``: list 1, s 2, i 3, f 4, b 5, type 6, shape 7, tensor 8."""
    for number, _wire, value in _fields(buf):
        if number == 1:  # ListValue: s 2, i 3, f 4, b 5, type 6
            out: Dict[str, list] = {}
            for n, w, v in _fields(value):
                if n == 2:
                    out.setdefault("s", []).append(bytes(v))
                elif n in (3, 5, 6):
                    out.setdefault({3: "i", 5: "b", 6: "type"}[n], []).extend(
                        _packed_varints(w, v))
                elif n == 4:
                    out.setdefault("f", []).extend(_packed_fixed(w, v, "f"))
            return out.get("i", out.get("s", out.get("f", out.get("type", out.get("b", [])))))
        if number == 2:
            return bytes(value)
        if number in (3, 6):
            return _signed(value)
        if number == 4:
            return struct.unpack("<f", value)[0]
        if number == 5:
            return bool(value)
        if number == 7:
            return _shape(value)
        if number == 8:
            return _tensor(value)
    return None


@dataclass
class GraphNode:
    """One ``NodeDef``: name 1, op 2, input 3, attr 5 (decoded: tensors as NumPy arrays)."""

    name: str
    op: str
    inputs: List[str] = field(default_factory=list)
    attrs: Dict[str, object] = field(default_factory=dict)


def _node(buf: memoryview) -> GraphNode:
    node = GraphNode("", "")
    for n, _, v in _fields(buf):
        if n == 1:
            node.name = _text(v)
        elif n == 2:
            node.op = _text(v)
        elif n == 3:
            node.inputs.append(_text(v))
        elif n == 5:  # map<string, AttrValue> entry: key 1, value 2
            key, attr = "", None
            for en, _, ev in _fields(v):
                if en == 1:
                    key = _text(ev)
                elif en == 2:
                    attr = ev
            node.attrs[key] = _attr_value(attr) if attr is not None else None
    if not node.name or not node.op:
        raise _WireError("a node without a name or op")
    return node


def parse_graph_def(data: bytes) -> Dict[str, GraphNode]:
    """The nodes of a serialized ``GraphDef`` (field 1), by name, in file order.

    Raises :class:`CorruptWeightsError` when ``data`` is not a well-formed GraphDef (a truncated
    file ends inside a field), naming where.
    """
    view = memoryview(data)
    nodes: Dict[str, GraphNode] = {}
    end = 0
    try:
        for number, wire, value, end in _fields(view, with_end=True):  # noqa: B007 (end: read by the except)
            if number == 1 and wire == 2:  # node; versions (4) and library (2) are not needed
                node = _node(value)
                nodes[node.name] = node
    except (_WireError, struct.error, ValueError) as exc:
        raise CorruptWeightsError(
            f"not a well-formed TensorFlow GraphDef ({exc.args[0]}, in the field after byte "
            f"{end} of {len(data)}, after {len(nodes)} complete nodes); the file is corrupt, "
            f"truncated or not a frozen graph") from None
    if not nodes:
        raise CorruptWeightsError(f"no nodes in the data ({len(data)} bytes): not a TensorFlow "
                                  f"GraphDef")
    return nodes


# --- files ------------------------------------------------------------------------------------

def is_tf_graph_path(path: str) -> bool:
    return path.lower().endswith(TF_GRAPH_SUFFIXES)


def _read_archive(path: str) -> Tuple[bytes, str]:
    """The frozen graph inside a release archive: its ``*_frozen.pb``, else its only ``.pb``."""
    try:
        with tarfile.open(path, "r:*") as tar:
            graphs = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".pb")]
            frozen = [m for m in graphs if m.name.endswith("_frozen.pb")]
            chosen = frozen if frozen else graphs
            if len(chosen) != 1:
                names = [m.name for m in tar.getmembers()][:12]
                raise CorruptWeightsError(
                    f"{path}: expected one '*_frozen.pb' (or a single '.pb') in the archive, "
                    f"found {len(chosen)} ({', '.join(m.name for m in chosen) or 'none'}); "
                    f"its files: {', '.join(names)}. Extract the frozen graph and pass the .pb")
            data = tar.extractfile(chosen[0]).read()
            if len(data) != chosen[0].size:
                raise EOFError(f"{chosen[0].name} is cut short")
            return data, f"{path}:{chosen[0].name}"
    except CorruptWeightsError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # zlib.error is an OSError
        raise CorruptWeightsError(
            f"cannot read {path} as a .tgz of a TensorFlow release ({type(exc).__name__}: "
            f"{exc}); the file is corrupt or truncated. Download it again.") from None


def read_tf_graph(path: str) -> Dict[str, GraphNode]:
    """The nodes of the frozen graph ``path`` (a ``.pb``, or a ``.tgz``/``.tar`` holding one)."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TensorFlow graph {path!r} does not exist")
    if path.lower().endswith(_ARCHIVE_SUFFIXES):
        data, what = _read_archive(path)
    else:
        with open(path, "rb") as f:
            data, what = f.read(), path
    try:
        return parse_graph_def(data)
    except CorruptWeightsError as exc:
        raise CorruptWeightsError(f"{what}: {exc}") from None
