"""Speaking to kafka-python 3.x's message classes, the independent codec the tests check against.

kafka-python 3 encodes and decodes every message from Kafka 4.3's JSON specs, with the
same snake_case field names as Strata's declarations, so the map between the two is the
identity except where kafka-python patches a spec: ``*_authorized_operations`` become
``authorized_operations`` holding a set of bit positions. Values are compared in a plain
form (dicts, lists, ``bytes``) restricted to the fields present in the version.
"""

from __future__ import annotations

import importlib
from typing import Any

from strata.broker.frontends.kafka.codec.compiler import flexible_of
from strata.broker.frontends.kafka.codec.schema import Struct
from strata.broker.frontends.kafka.codec.types import Array, Primitive

_MODULES = (
    "kafka.protocol.producer",
    "kafka.protocol.consumer",
    "kafka.protocol.metadata",
    "kafka.protocol.admin",
    "kafka.protocol.sasl",
)
#: Strata name -> kafka-python name, where kafka-python renamed a field.
_RENAMED = {
    "cluster_authorized_operations": "authorized_operations",
    "topic_authorized_operations": "authorized_operations",
}
#: int32 bit sets kafka-python decodes to a set of bit positions (None for INT32_MIN,
#: Kafka's "not requested").
_BITFIELDS = {"authorized_operations", *_RENAMED}
_INT32_MIN = -(1 << 31)


def kp_class(cls: type[Struct]) -> Any:
    """kafka-python's class for the same message."""
    for name in _MODULES:
        found = getattr(importlib.import_module(name), cls.__name__, None)
        if found is not None:
            return found
    raise LookupError(cls.__name__)


def _kp_fields(kp_struct: Any) -> dict[str, Any]:
    return dict(kp_struct._struct.fields)


def _bits_to_set(value: int) -> set[int]:
    return {i for i in range(32) if value & (1 << i)}


def _set_to_bits(bits: Any) -> int:
    if bits is None:
        return _INT32_MIN
    if isinstance(bits, int):
        return bits
    value = 0
    for i in bits:
        value |= 1 << i
    return value - (1 << 32) if value & (1 << 31) else value


def _in_version(cls: type[Struct], version: int, flexible: bool) -> list[Any]:
    return [
        fd
        for fd in cls.__kafka_fields__
        if fd.present(version) and (flexible or not fd.is_tagged(version))
    ]


def to_kp(obj: Struct, version: int, kp_cls: Any, flexible: bool | None = None) -> Any:
    """The kafka-python object holding the same values as ``obj`` (fields of ``version``)."""
    if flexible is None:
        flexible = flexible_of(type(obj), version)
    kp_fields = _kp_fields(kp_cls)
    values: dict[str, Any] = {}
    for fd in _in_version(type(obj), version, flexible):
        value = getattr(obj, fd.name)
        name = _RENAMED.get(fd.name, fd.name) if fd.name not in kp_fields else fd.name
        kp_field = kp_fields[name]
        if fd.is_tagged(version) and value is None:
            continue  # an absent tagged struct
        ft = fd.wire_type
        if isinstance(ft, Array) and isinstance(ft.element, type) and value is not None:
            sub = kp_field.data_class
            value = [to_kp(e, version, sub, flexible) for e in value]
        elif isinstance(ft, type) and value is not None:
            value = to_kp(value, version, kp_field.data_class, flexible)
        elif isinstance(value, memoryview):
            value = bytes(value)
        elif fd.name in _BITFIELDS:
            value = _bits_to_set(value)
        values[name] = value
    if hasattr(kp_cls, "API_KEY"):
        return kp_cls(version=version, **values)
    return kp_cls(**values)


def plain(obj: Struct | None, version: int, flexible: bool) -> Any:
    """Strata's object as nested dicts/lists/bytes, fields of ``version`` only."""
    if obj is None:
        return None
    out: dict[str, Any] = {}
    for fd in _in_version(type(obj), version, flexible):
        out[fd.name] = _plain_value(fd.wire_type, getattr(obj, fd.name), version, flexible)
    return out


def _plain_value(ft: Any, value: Any, version: int, flexible: bool) -> Any:
    if value is None:
        return None
    if isinstance(ft, Array):
        return [_plain_value(ft.element, e, version, flexible) for e in value]
    if isinstance(ft, type):
        return plain(value, version, flexible)
    if isinstance(ft, Primitive) and isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def kp_plain(kp_obj: Any, cls: type[Struct], version: int, flexible: bool) -> Any:
    """kafka-python's object in the same plain form as :func:`plain`, under Strata's names."""
    if kp_obj is None:
        return None
    out: dict[str, Any] = {}
    kp_fields = _kp_fields(kp_obj)
    for fd in _in_version(cls, version, flexible):
        name = fd.name if fd.name in kp_fields else _RENAMED[fd.name]
        value = getattr(kp_obj, name)
        ft = fd.wire_type
        if fd.name in _BITFIELDS:
            out[fd.name] = _set_to_bits(value)
        elif value is None:
            out[fd.name] = None
        elif isinstance(ft, Array) and isinstance(ft.element, type):
            out[fd.name] = [kp_plain(e, ft.element, version, flexible) for e in value]
        elif isinstance(ft, type):
            out[fd.name] = kp_plain(value, ft, version, flexible)
        elif isinstance(ft, Array):
            out[fd.name] = list(value)
        elif isinstance(value, memoryview | bytearray):
            out[fd.name] = bytes(value)
        else:
            out[fd.name] = value
    return out
