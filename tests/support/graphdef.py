"""A tiny writer of TensorFlow frozen graphs (``GraphDef`` protobuf), without TensorFlow.

Only the handful of messages a frozen inference graph needs are encoded, straight into the
protobuf wire format (field numbers from tensorflow/core/framework/{graph,node_def,attr_value,
tensor,tensor_shape,versions}.proto). The result is read by essentia's real TensorFlow C API,
so a mistake here shows up as an import error there, never as a silently wrong graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DT_FLOAT = 1
DT_INT32 = 3
# GraphDef producer version. An importer refuses a graph only when its min_consumer (not set
# here) is newer than the importer; TensorFlow 2.5 in essentia-tensorflow reads these graphs.
PRODUCER = 808


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 fields encode negatives as ten-byte two's complement
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def _shape(dims) -> bytes:
    """TensorShapeProto; ``None`` or -1 marks a dimension of unknown size."""
    out = b""
    for size in dims:
        out += _len_field(2, _int_field(1, -1 if size is None else int(size)))
    return out


def _tensor(array: np.ndarray) -> bytes:
    if array.dtype == np.float32:
        dtype = DT_FLOAT
    elif array.dtype == np.int32:
        dtype = DT_INT32
    else:
        raise TypeError(f"unsupported constant dtype {array.dtype}")
    return (_int_field(1, dtype) + _len_field(2, _shape(array.shape))
            + _len_field(4, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()))


# AttrValue encoders: one per kind of attribute value this writer supports.
def attr_type(dtype: int) -> bytes:
    return _int_field(6, dtype)


def attr_shape(dims) -> bytes:
    return _len_field(7, _shape(dims))


def attr_tensor(array: np.ndarray) -> bytes:
    return _len_field(8, _tensor(array))


def attr_bool(value: bool) -> bytes:
    return _int_field(5, int(value))


def attr_type_list(dtypes) -> bytes:
    # ListValue.type is a packed repeated enum (field 6).
    packed = b"".join(_varint(d) for d in dtypes)
    return _len_field(1, _len_field(6, packed))


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        out = _len_field(1, self.name.encode()) + _len_field(2, self.op.encode())
        for inp in self.inputs:
            out += _len_field(3, inp.encode())
        for key in sorted(self.attrs):
            entry = _len_field(1, key.encode()) + _len_field(2, self.attrs[key])
            out += _len_field(5, entry)
        return out


class Graph:
    """Builds a frozen graph node by node; ``to_bytes`` gives the ``.pb`` content."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add(self, name: str, op: str, inputs=(), **attrs: bytes) -> str:
        self.nodes.append(Node(name, op, list(inputs), dict(attrs)))
        return name

    def placeholder(self, name: str, shape) -> str:
        return self.add(name, "Placeholder", dtype=attr_type(DT_FLOAT), shape=attr_shape(shape))

    def const(self, name: str, value) -> str:
        array = np.asarray(value)
        array = array.astype(np.int32 if array.dtype.kind in "iu" else np.float32)
        dtype = DT_INT32 if array.dtype == np.int32 else DT_FLOAT
        return self.add(name, "Const", dtype=attr_type(dtype), value=attr_tensor(array))

    def matmul(self, name: str, a: str, b: str) -> str:
        return self.add(name, "MatMul", [a, b], T=attr_type(DT_FLOAT),
                        transpose_a=attr_bool(False), transpose_b=attr_bool(False))

    def bias_add(self, name: str, x: str, bias: str) -> str:
        return self.add(name, "BiasAdd", [x, bias], T=attr_type(DT_FLOAT))

    def unary(self, name: str, op: str, x: str) -> str:
        return self.add(name, op, [x], T=attr_type(DT_FLOAT))

    def binary(self, name: str, op: str, a: str, b: str) -> str:
        return self.add(name, op, [a, b], T=attr_type(DT_FLOAT))

    def mean(self, name: str, x: str, axes: str) -> str:
        return self.add(name, "Mean", [x, axes], T=attr_type(DT_FLOAT), Tidx=attr_type(DT_INT32),
                        keep_dims=attr_bool(False))

    def identity_n(self, name: str, inputs: list[str]) -> str:
        """One node with several outputs (``name:0``, ``name:1``...), like a TF2 ``PartitionedCall``."""
        return self.add(name, "IdentityN", inputs, T=attr_type_list([DT_FLOAT] * len(inputs)))

    def no_op(self, name: str) -> str:
        return self.add(name, "NoOp")

    def to_bytes(self) -> bytes:
        body = b"".join(_len_field(1, node.encode()) for node in self.nodes)
        versions = _int_field(1, PRODUCER)
        return body + _len_field(4, versions)
