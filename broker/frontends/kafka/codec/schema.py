"""How a Kafka message is declared: one class per request or response, one line per field.

A declaration reads like Kafka's JSON message specs, and it is the only place a message's
layout is written down: the compiler (:mod:`.compiler`) derives the decoder and the
encoder of every version from it, so there is no per-version byte handling to get wrong::

    @message(ApiKey.HEARTBEAT, "0-4", flexible="4+")
    class HeartbeatRequest(RequestMessage):
        group_id: str = f(STRING, "0+")
        generation_id: int = f(INT32, "0+")
        member_id: str = f(STRING, "0+")
        group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)

``f(type, versions, ...)`` takes Kafka's version strings (``"0+"``, ``"3-5"``, ``"none"``):
the versions the field exists in, ``nullable=`` the versions it may be null in, ``tag=``
and ``tagged=`` for a tagged field (KIP-482), ``default=`` the value it has where it is
absent (Kafka's defaults otherwise: ``0``, ``""``, ``False``, the zero UUID, an empty
list, an empty struct; ``None`` for records and for tagged structs, which are written
only when present). Nested structs are classes nested in the message class and are named
by string where a field uses them (``Array("TopicData")``), because Python does not let a
nested class see its siblings.

Decoded messages are instances of these classes: slotted, with plain attributes
(``req.topic_data[0].partition_data[0].index``), keyword-only constructors, ``==`` and a
readable ``repr``. A field absent in the decoded version holds its default. Names are
Kafka's JSON names in snake_case, as kafka-python and most Kafka tooling spell them.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar, dataclass_transform

from strata.broker.frontends.kafka.codec.types import Array, Primitive

#: Highest version number: ``"N+"`` means ``N`` up to this.
MAX_VERSION: Final = 0x7FFF


@dataclass(frozen=True, slots=True)
class Versions:
    """An inclusive version range; ``"none"`` is the empty range."""

    low: int
    high: int

    @classmethod
    def parse(cls, spec: str) -> Versions:
        spec = spec.strip()
        if spec == "none":
            return cls(1, 0)
        if spec.endswith("+"):
            return cls(int(spec[:-1]), MAX_VERSION)
        if "-" in spec:
            low, high = spec.split("-")
            return cls(int(low), int(high))
        return cls(int(spec), int(spec))

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.low <= version <= self.high

    @property
    def empty(self) -> bool:
        return self.low > self.high

    def __str__(self) -> str:
        if self.empty:
            return "none"
        if self.high == MAX_VERSION:
            return f"{self.low}+"
        return f"{self.low}" if self.low == self.high else f"{self.low}-{self.high}"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()

FieldType = Primitive | Array | type | str


@dataclass(slots=True)
class Field:
    """One field of a declaration (what ``f(...)`` returns)."""

    wire_type: FieldType
    versions: Versions
    nullable: Versions
    tag: int | None
    tagged: Versions
    default: Any
    #: False only for the request header's ``client_id``, which stays a classic
    #: ``int16``-length string even in flexible headers (Kafka's ``flexibleVersions: none``).
    compact: bool
    name: str = ""

    def present(self, version: int) -> bool:
        return version in self.versions

    def is_tagged(self, version: int) -> bool:
        return self.tag is not None and version in self.tagged

    def is_nullable(self, version: int) -> bool:
        return version in self.nullable

    @property
    def struct(self) -> type[Struct] | None:
        """The struct class of a struct or struct-array field (once resolved)."""
        t = self.wire_type.element if isinstance(self.wire_type, Array) else self.wire_type
        return t if isinstance(t, type) else None

    def make_default(self) -> Any:
        """A fresh default value (lists and structs are never shared between instances)."""
        if self.default is not UNSET:
            return self.default
        if isinstance(self.wire_type, Array):
            return []
        if isinstance(self.wire_type, type):
            return self.wire_type()
        raise AssertionError(f"field {self.name} has no default")  # pragma: no cover


def f(
    type_: FieldType,
    versions: str,
    *,
    nullable: str = "none",
    default: Any = UNSET,
    tag: int | None = None,
    tagged: str | None = None,
    compact: bool = True,
) -> Any:
    """Declare a field (see the module docstring). Returns ``Any`` so that the annotation
    on the left, not this call, is the attribute's type for mypy."""
    field_versions = Versions.parse(versions)
    tagged_versions = Versions.parse(
        tagged if tagged is not None else (versions if tag is not None else "none")
    )
    if tag is not None and tagged_versions.empty:
        raise ValueError("a tagged field needs the versions it is tagged in")
    if default is UNSET:
        if isinstance(type_, Primitive):
            default = type_.default
        elif not isinstance(type_, Array) and tag is not None:
            default = None  # a tagged struct is written only when present
    return Field(
        wire_type=type_,
        versions=field_versions,
        nullable=Versions.parse(nullable),
        tag=tag,
        tagged=tagged_versions,
        default=default,
        compact=compact,
    )


@dataclass_transform(kw_only_default=True)
class _StructMeta(type):
    """Turns the ``f(...)`` class attributes into slots, in declaration (= wire) order."""

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> _StructMeta:
        fields: list[Field] = []
        for attr, value in list(namespace.items()):
            if isinstance(value, Field):
                if keyword.iskeyword(attr) or attr.startswith("_"):
                    raise TypeError(f"{name}.{attr}: not usable as a field name")
                value.name = attr
                fields.append(value)
                del namespace[attr]
        namespace["__slots__"] = tuple(field.name for field in fields)
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        cls.__kafka_fields__ = tuple(fields)  # type: ignore[attr-defined]
        return cls


class Struct(metaclass=_StructMeta):
    """Base of every declared struct (messages, their nested structs, the headers)."""

    __slots__ = ()
    __kafka_fields__: ClassVar[tuple[Field, ...]] = ()
    __kafka_ready__: ClassVar[bool] = False

    def __init__(self, **values: Any) -> None:  # replaced by finalize()
        raise TypeError(f"{type(self).__qualname__} is declared but was not finalized")

    def __repr__(self) -> str:
        body = ", ".join(f"{fd.name}={getattr(self, fd.name)!r}" for fd in self.__kafka_fields__)
        return f"{type(self).__qualname__}({body})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            getattr(self, fd.name) == getattr(other, fd.name) for fd in self.__kafka_fields__
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


class RequestMessage(Struct):
    """Base of request declarations."""

    __slots__ = ()
    __kafka_api__: ClassVar[ApiInfo]


class ResponseMessage(Struct):
    """Base of response declarations."""

    __slots__ = ()
    __kafka_api__: ClassVar[ApiInfo]


@dataclass(frozen=True, slots=True)
class ApiInfo:
    """What a message declaration says about its API as a whole."""

    api_key: int
    versions: Versions
    flexible: Versions
    is_request: bool

    def is_flexible(self, version: int) -> bool:
        return version in self.flexible


M = TypeVar("M", bound=Struct)

#: Every declared message, by (api key, is_request).
REGISTRY: dict[tuple[int, bool], type[Struct]] = {}


def nested_structs(cls: type) -> Iterator[type[Struct]]:
    for value in vars(cls).values():
        if isinstance(value, type) and issubclass(value, Struct):
            yield value


def _resolve(owner: type, field: Field) -> None:
    t = field.wire_type
    element = t.element if isinstance(t, Array) else t
    if isinstance(element, str):
        resolved = getattr(owner, element, None)
        if not (isinstance(resolved, type) and issubclass(resolved, Struct)):
            raise TypeError(f"{owner.__qualname__}.{field.name}: no nested struct {element!r}")
        field.wire_type = Array(resolved) if isinstance(t, Array) else resolved
    if field.default is UNSET and not isinstance(field.wire_type, Array | type):
        raise TypeError(f"{owner.__qualname__}.{field.name}: unresolved type {field.wire_type!r}")


_INIT_TEMPLATE = """\
def __init__(self, *, {params}):
{body}
"""


def finalize(cls: type[Struct], owner: type | None = None) -> None:
    """Resolve a struct's by-name references (against ``owner``, the message class) and
    give it its keyword-only ``__init__``. Idempotent."""
    if cls.__kafka_ready__:
        return
    for field in cls.__kafka_fields__:
        _resolve(owner if owner is not None else cls, field)
    namespace: dict[str, Any] = {"UNSET": UNSET}
    params, body = [], []
    for i, field in enumerate(cls.__kafka_fields__):
        mutable = field.default is UNSET
        if mutable:
            namespace[f"_make{i}"] = field.make_default
            params.append(f"{field.name}=UNSET")
            body.append(
                f"    self.{field.name} = _make{i}() if {field.name} is UNSET else {field.name}"
            )
        else:
            namespace[f"_d{i}"] = field.default
            params.append(f"{field.name}=_d{i}")
            body.append(f"    self.{field.name} = {field.name}")
    if not params:
        source = "def __init__(self):\n    pass\n"
    else:
        source = _INIT_TEMPLATE.format(params=", ".join(params), body="\n".join(body))
    exec(compile(source, f"<kafka struct {cls.__qualname__}>", "exec"), namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", init)  # noqa: B010  (mypy refuses assigning a method)
    cls.__kafka_ready__ = True


def message(api_key: int, versions: str, *, flexible: str) -> Callable[[type[M]], type[M]]:
    """Declare a request or response class of ``api_key`` for ``versions`` (Kafka's
    ``validVersions``), flexible (KIP-482: compact types, tagged fields) in ``flexible``."""

    def decorate(cls: type[M]) -> type[M]:
        is_request = issubclass(cls, RequestMessage)
        if not is_request and not issubclass(cls, ResponseMessage):
            raise TypeError(
                f"{cls.__qualname__} must derive from RequestMessage or ResponseMessage"
            )
        info = ApiInfo(int(api_key), Versions.parse(versions), Versions.parse(flexible), is_request)
        cls.__kafka_api__ = info  # type: ignore[attr-defined]
        for nested in nested_structs(cls):
            finalize(nested, owner=cls)
        finalize(cls, owner=cls)
        key = (info.api_key, is_request)
        if key in REGISTRY:
            raise TypeError(f"{cls.__qualname__}: API {api_key} declared twice")
        REGISTRY[key] = cls
        return cls

    return decorate
