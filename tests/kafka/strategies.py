"""Hypothesis strategies generated from the codec's declarations.

``message_strategy(cls, version)`` builds instances of a declared message holding, for
every field present in that version, an arbitrary value of the field's type: negative
numbers, unicode strings, nulls where the version allows them, empty and multi-element
arrays, tagged fields present or absent. Fields absent in the version keep their
defaults, so an instance equals what decoding its own encoding gives back. The round-trip
tests against kafka-python and the connection fuzzer draw from the same strategies.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from strata.broker.frontends.kafka.codec import types as t
from strata.broker.frontends.kafka.codec.compiler import flexible_of
from strata.broker.frontends.kafka.codec.schema import UNSET, Field, Struct
from strata.broker.frontends.kafka.codec.types import Array, Primitive

_INTS = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1),
    "varint": (-(1 << 31), (1 << 31) - 1),
    "varlong": (-(1 << 63), (1 << 63) - 1),
    "uvarint": (0, (1 << 32) - 1),
}
#: Text without surrogates (they have no UTF-8 encoding), from ASCII to emoji.
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_MAX_LIST = 3


def _primitive(p: Primitive) -> st.SearchStrategy[Any]:
    if p.name in _INTS:
        low, high = _INTS[p.name]
        return st.one_of(
            st.integers(low, high),
            st.sampled_from([low, -1, 0, 1, high]).filter(lambda v: low <= v <= high),
        )
    if p is t.FLOAT64:
        return st.floats(allow_nan=False)
    if p is t.BOOL:
        return st.booleans()
    if p is t.UUID:
        return st.uuids()
    if p is t.STRING:
        return _TEXT
    if p is t.BYTES or p is t.RECORDS:
        return st.binary(max_size=24)
    raise AssertionError(p)


def value_strategy(field: Field, version: int, flexible: bool) -> st.SearchStrategy[Any]:
    """Any value the field may hold in ``version``."""
    ft = field.wire_type
    if isinstance(ft, Primitive):
        base = _primitive(ft)
    elif isinstance(ft, Array):
        el = ft.element
        element = (
            _primitive(el) if isinstance(el, Primitive) else struct_strategy(el, version, flexible)  # type: ignore[arg-type]
        )
        base = st.lists(element, max_size=_MAX_LIST)
    else:
        base = struct_strategy(ft, version, flexible)  # type: ignore[arg-type]
    nullable = field.is_nullable(version) or (field.is_tagged(version) and field.default is None)
    if nullable:
        base = st.one_of(st.none(), base)
    if field.is_tagged(version) and flexible and field.default not in (UNSET, None):
        base = st.one_of(st.just(field.default), base)  # tagged and absent
    return base


def struct_strategy(cls: type[Struct], version: int, flexible: bool) -> st.SearchStrategy[Struct]:
    fields = {
        fd.name: value_strategy(fd, version, flexible)
        for fd in cls.__kafka_fields__
        if fd.present(version) and (flexible or not fd.is_tagged(version))
    }
    return st.builds(cls, **fields)


def message_strategy(cls: type[Struct], version: int) -> st.SearchStrategy[Struct]:
    return struct_strategy(cls, version, flexible_of(cls, version))
