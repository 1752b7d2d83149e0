"""The schema language of Strata's wire protocol: field types that check decoded headers.

A message is a msgpack map; its shape is a :class:`Struct` of :class:`Field` s, each
required or with a default. ``check`` walks a decoded value, fills in defaults when asked
(the server fills them, so handlers read every field), and raises :class:`FieldError`
with the path of the first field at fault. The API declarations in :mod:`.apis` are
written in this language; :mod:`.docs` renders them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final


class FieldError(Exception):
    """A schema violation deep in a header; turned into a ProtocolError at the top."""

    def __init__(self, path: str, text: str) -> None:
        super().__init__(f"field {path}: {text}")


def tname(value: Any) -> str:
    if value is None:
        return "nil"
    return {dict: "map", list: "list", bytes: "bytes", str: "str", bool: "bool"}.get(
        type(value), type(value).__name__
    )


class Type:
    """A field type: checks a decoded value and, for maps, fills defaults in place."""

    __slots__ = ()
    name: str  # a field or a property in each subclass: how messages and docs spell the type

    def check(self, value: Any, path: str, fill: bool) -> None:
        raise NotImplementedError


@dataclass(slots=True, frozen=True)
class Scalar(Type):
    name: str
    types: tuple[type, ...]

    def check(self, value: Any, path: str, fill: bool) -> None:
        # Exact type: msgpack yields exact ints/bools, and a bool is not an int here.
        if type(value) not in self.types:
            raise FieldError(path, f"expected {self.name}, got {tname(value)}")


@dataclass(slots=True, frozen=True)
class AnyType(Type):
    name: str = "any"

    def check(self, value: Any, path: str, fill: bool) -> None:
        return None


@dataclass(slots=True, frozen=True)
class Nullable(Type):
    inner: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.inner.name}|nil"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if value is not None:
            self.inner.check(value, path, fill)


@dataclass(slots=True, frozen=True)
class List(Type):
    item: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"[{self.item.name}]"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if type(value) is not list:
            raise FieldError(path, f"expected list, got {tname(value)}")
        check = self.item.check
        for i, item in enumerate(value):
            check(item, f"{path}[{i}]", fill)


@dataclass(slots=True, frozen=True)
class Tuple(Type):
    """A fixed-length msgpack array: compact where there are many of them."""

    items: tuple[Type, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return "(" + ", ".join(t.name for t in self.items) + ")"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if type(value) is not list:
            raise FieldError(path, f"expected list, got {tname(value)}")
        if len(value) != len(self.items):
            raise FieldError(path, f"expected {len(self.items)} items, got {len(value)}")
        for i, (t, item) in enumerate(zip(self.items, value, strict=True)):
            t.check(item, f"{path}[{i}]", fill)


@dataclass(slots=True, frozen=True)
class Map(Type):
    """A map with string keys and values of one type (e.g. topic configs)."""

    value: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{{str: {self.value.name}}}"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if type(value) is not dict:
            raise FieldError(path, f"expected map, got {tname(value)}")
        for k, v in value.items():
            if type(k) is not str:
                raise FieldError(path, f"expected str keys, got {tname(k)}")
            self.value.check(v, f"{path}.{k}", fill)


REQUIRED: Final = object()


@dataclass(slots=True, frozen=True)
class Field:
    name: str
    type: Type
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(slots=True, frozen=True)
class Struct(Type):
    """A map with named fields; unknown keys are kept and ignored."""

    fields: tuple[Field, ...]
    name: str = "map"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if type(value) is not dict:
            raise FieldError(path or "header", f"expected map, got {tname(value)}")
        prefix = f"{path}." if path else ""
        for f in self.fields:
            if f.name in value:
                f.type.check(value[f.name], prefix + f.name, fill)
            elif f.default is REQUIRED:
                raise FieldError(prefix + f.name, f"required {f.type.name} is missing")
            elif fill:
                d = f.default
                value[f.name] = copy.deepcopy(d) if isinstance(d, list | dict) else d


INT: Final = Scalar("int", (int,))
STR: Final = Scalar("str", (str,))
BYTES: Final = Scalar("bytes", (bytes,))
BOOL: Final = Scalar("bool", (bool,))
FLOAT: Final = Scalar("float", (float,))
ANY: Final = AnyType()


def req(name: str, type_: Type, doc: str = "") -> Field:
    return Field(name, type_, REQUIRED, doc)


def opt(name: str, type_: Type, default: Any, doc: str = "") -> Field:
    return Field(name, type_, default, doc)


def struct_(*fields: Field | Sequence[Field]) -> Struct:
    flat: list[Field] = []
    for f in fields:
        if isinstance(f, Field):
            flat.append(f)
        else:
            flat.extend(f)
    return Struct(tuple(flat))


@dataclass(slots=True, frozen=True)
class Schema:
    """One API version: its request and response header shapes and where payloads go."""

    request: Struct
    response: Struct
    request_payload: str = ""
    response_payload: str = ""
    doc: str = ""

