"""Turns a declaration into a decoder and an encoder per (struct, version, flexible).

Each is straight-line Python generated from the declaration the first time that version
is used, then cached: runs of fixed-width fields become one ``Struct.unpack_from`` /
``pack``, variable-length fields call the readers and writers of :mod:`.types`, nested
structs call their own compiled functions. Generated code is what makes a declarative
codec as fast as a hand-written one in CPython (a Produce request decodes in a few
microseconds, records untouched), and it is small enough to read: ``source_of(cls,
version, flexible)`` returns it.

Decoders have the signature ``(buf, pos, budget) -> (obj, pos)``; ``budget`` is a
one-element list counting down the array elements the message may still hold, so a
small frame cannot make the decoder build millions of objects. Encoders have
``(obj, buf, parts) -> buf``: they append to ``buf`` and, when a ``records`` value is too
large to copy (or is not bytes at all), close ``buf`` into ``parts``, append the records
as their own part and go on in a fresh buffer, which they return.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any, Final

from strata.broker.frontends.kafka.codec import types as t
from strata.broker.frontends.kafka.codec.exceptions import EncodeError
from strata.broker.frontends.kafka.codec.schema import UNSET, Field, Struct
from strata.broker.frontends.kafka.codec.types import Array, OutParts, Primitive, WireError

Decoder = Callable[[memoryview, int, list[int]], tuple[Any, int]]
Encoder = Callable[[Any, bytearray, "OutParts | None"], bytearray]

#: Array elements one message may hold, all arrays together (each element is a Python
#: object or more, so this bounds the memory a request can make the broker allocate).
DEFAULT_MAX_ELEMENTS: Final = 1 << 20

_decoders: dict[tuple[type, int, bool], Decoder] = {}
_encoders: dict[tuple[type, int, bool], Encoder] = {}
_sources: dict[tuple[str, type, int, bool], str] = {}

_HELPERS: Final[dict[str, Any]] = {
    "_new": object.__new__,
    "_UUID": uuid.UUID,
    "_unpack_from": struct.unpack_from,
    "_pack": struct.pack,
    "_i8": struct.Struct(">b"),
    "_i32": struct.Struct(">i"),
    "_WireError": WireError,
    "_uv": t.read_uvarint,
    "_tag_count": t.read_tag_count,
    "_skip_tagged": t.skip_tagged,
    "_wuv": t.write_uvarint,
    "_write_tagged": t.write_tagged,
    "UNSET": UNSET,
}

# reader / writer names by (type, compact, nullable)
_READERS: Final[dict[tuple[str, bool, bool], Callable[..., Any]]] = {
    ("string", False, False): t.read_string,
    ("string", False, True): t.read_nullable_string,
    ("string", True, False): t.read_compact_string,
    ("string", True, True): t.read_compact_nullable_string,
    ("bytes", False, False): t.read_bytes,
    ("bytes", False, True): t.read_nullable_bytes,
    ("bytes", True, False): t.read_compact_bytes,
    ("bytes", True, True): t.read_compact_nullable_bytes,
    ("records", False, False): t.read_records,
    ("records", False, True): t.read_records,
    ("records", True, False): t.read_compact_records,
    ("records", True, True): t.read_compact_records,
    ("varint", False, False): t.read_varint,
    ("varlong", False, False): t.read_varlong,
    ("uvarint", False, False): t.read_uvarint,
}


_WRITERS: Final[dict[tuple[str, bool, bool], Callable[..., Any]]] = {
    ("string", False, False): t.write_string,
    ("string", False, True): t.write_nullable_string,
    ("string", True, False): t.write_compact_string,
    ("string", True, True): t.write_compact_nullable_string,
    ("bytes", False, False): t.write_bytes,
    ("bytes", False, True): t.write_nullable_bytes,
    ("bytes", True, False): t.write_compact_bytes,
    ("bytes", True, True): t.write_compact_nullable_bytes,
}


def _writer(kind: str, compact: bool, nullable: bool) -> Callable[..., Any]:
    if kind == "records":
        return t.write_compact_records if compact else t.write_records
    if kind in ("varint", "varlong", "uvarint"):
        return {"varint": t.write_varint, "varlong": t.write_varlong, "uvarint": t.write_uvarint}[
            kind
        ]
    return _WRITERS[(kind, compact, nullable)]


def _reader(kind: str, compact: bool, nullable: bool) -> Callable[..., Any]:
    if kind in ("varint", "varlong", "uvarint"):
        return _READERS[(kind, False, False)]
    return _READERS[(kind, compact, nullable)]


def flexible_of(cls: type[Struct], version: int) -> bool:
    api = getattr(cls, "__kafka_api__", None)
    if api is None:
        raise TypeError(f"{cls.__qualname__} is not a message: pass flexible explicitly")
    return bool(api.is_flexible(version))


def min_size(type_: Any, version: int, flexible: bool, nullable: bool, compact: bool) -> int:
    """The fewest bytes a value of ``type_`` takes on the wire (to check array counts)."""
    if isinstance(type_, Primitive):
        if type_.fmt is not None:
            return struct.calcsize(">" + type_.fmt)
        return type_.min_compact_size if compact else type_.min_size
    if isinstance(type_, Array):
        return 1 if compact else 4
    if nullable:
        return 1
    total = 1 if flexible else 0
    for field in type_.__kafka_fields__:
        if field.present(version) and not (flexible and field.is_tagged(version)):
            total += min_size(
                field.wire_type,
                version,
                flexible,
                field.is_nullable(version),
                flexible and field.compact,
            )
    return total


class _Gen:
    """Accumulates one generated function: its lines and the names it closes over."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = dict(_HELPERS)
        self.lines: list[str] = []
        self._n = 0

    def name(self, value: Any, prefix: str = "_c") -> str:
        self._n += 1
        key = f"{prefix}{self._n}"
        self.ns[key] = value
        return key

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def build(self, fn: str, label: str, kind: str, key: tuple[type, int, bool]) -> Any:
        source = "\n".join(self.lines) + "\n"
        _sources[(kind, *key)] = source
        exec(compile(source, f"<kafka {kind} {label}>", "exec"), self.ns)
        return self.ns[fn]


def _fixed(field: Field) -> Primitive | None:
    ft = field.wire_type
    return ft if isinstance(ft, Primitive) and ft.fmt is not None else None


def _fmt(field: Field) -> str:
    fixed = _fixed(field)
    assert fixed is not None and fixed.fmt is not None
    return fixed.fmt


def _struct(element: Any) -> type[Struct]:
    """A resolved struct type (declarations resolve names when the message is declared)."""
    assert isinstance(element, type) and issubclass(element, Struct), element
    return element


# -- decoding -----------------------------------------------------------------------------


def _emit_read(
    g: _Gen, field: Field, version: int, flexible: bool, target: str, pos: str, ind: int
) -> None:
    """Code reading one ``field`` at ``pos`` into ``target`` and advancing ``pos``."""
    ft = field.wire_type
    compact = flexible and field.compact
    nullable = field.is_nullable(version)
    if isinstance(ft, Primitive):
        if ft.fmt is not None:
            s = g.name(struct.Struct(">" + ft.fmt), "_s")
            if ft is t.UUID:
                g.emit(ind, f"{target} = _UUID(bytes={s}.unpack_from(buf, {pos})[0])")
            else:
                g.emit(ind, f"({target},) = {s}.unpack_from(buf, {pos})")
            g.emit(ind, f"{pos} += {struct.calcsize('>' + ft.fmt)}")
        else:
            r = g.name(_reader(ft.name, compact, nullable), "_r")
            g.emit(ind, f"{target}, {pos} = {r}(buf, {pos})")
        return
    if isinstance(ft, Array):
        el = ft.element
        el_min = min_size(el, version, flexible, False, compact)
        length = g.name(t.read_compact_array_length if compact else t.read_array_length, "_len")
        g.emit(ind, f"n, {pos} = {length}(buf, {pos}, {max(el_min, 1)}, lim, {nullable})")
        if nullable:
            g.emit(ind, "if n < 0:")
            g.emit(ind + 1, f"{target} = None")
            g.emit(ind, "else:")
            ind += 1
        if isinstance(el, Primitive) and el.fmt is not None and el is not t.UUID:
            size = struct.calcsize(">" + el.fmt)
            g.emit(ind, f"{target} = list(_unpack_from('>%d{el.fmt}' % n, buf, {pos}))")
            g.emit(ind, f"{pos} += n * {size}")
            return
        g.emit(ind, "items = []")
        g.emit(ind, "for _ in range(n):")
        if isinstance(el, Primitive):
            if el is t.UUID:
                g.emit(ind + 1, f"e, {pos} = {g.name(t.read_uuid, '_r')}(buf, {pos})")
            else:
                g.emit(
                    ind + 1,
                    f"e, {pos} = {g.name(_reader(el.name, compact, False), '_r')}(buf, {pos})",
                )
        else:
            g.emit(
                ind + 1,
                f"e, {pos} = {g.name(decoder(_struct(el), version, flexible), '_d')}(buf, {pos}, lim)",
            )
        g.emit(ind + 1, "items.append(e)")
        g.emit(ind, f"{target} = items")
        return
    # a single struct; a nullable one carries an int8 presence byte (-1 null, 1 present)
    d = g.name(decoder(_struct(ft), version, flexible), "_d")
    if nullable:
        g.emit(ind, f"(present,) = _i8.unpack_from(buf, {pos})")
        g.emit(ind, f"{pos} += 1")
        g.emit(ind, "if present < 0:")
        g.emit(ind + 1, f"{target} = None")
        g.emit(ind, "else:")
        g.emit(ind + 1, f"{target}, {pos} = {d}(buf, {pos}, lim)")
    else:
        g.emit(ind, f"{target}, {pos} = {d}(buf, {pos}, lim)")


def _default_expr(g: _Gen, field: Field) -> str:
    if field.default is UNSET:
        return (
            "[]" if isinstance(field.wire_type, Array) else f"{g.name(field.make_default, '_mk')}()"
        )
    if field.default is None or isinstance(field.default, bool | int):
        return repr(field.default)
    return g.name(field.default, "_dflt")


def _flush_fixed_run(g: _Gen, run: list[Field]) -> None:
    if not run:
        return
    fmt = ">" + "".join(_fmt(fd) for fd in run)
    s = g.name(struct.Struct(fmt), "_s")
    targets = []
    for i, fd in enumerate(run):
        targets.append(f"u{i}" if _fixed(fd) is t.UUID else f"o.{fd.name}")
    g.emit(1, f"({', '.join(targets)},) = {s}.unpack_from(buf, pos)")
    g.emit(1, f"pos += {struct.calcsize(fmt)}")
    for i, fd in enumerate(run):
        if _fixed(fd) is t.UUID:
            g.emit(1, f"o.{fd.name} = _UUID(bytes=u{i})")
    run.clear()


def _build_decoder(cls: type[Struct], version: int, flexible: bool) -> Decoder:
    g = _Gen()
    g.ns["C"] = cls
    g.emit(0, "def decode(buf, pos, lim):")
    g.emit(1, "o = _new(C)")
    run: list[Field] = []
    tagged: list[Field] = []
    absent: list[Field] = []
    for field in cls.__kafka_fields__:
        if not field.present(version):
            absent.append(field)
        elif field.is_tagged(version):
            if flexible:
                tagged.append(field)
            absent.append(field)
        elif _fixed(field) is not None:
            run.append(field)
        else:
            _flush_fixed_run(g, run)
            _emit_read(g, field, version, flexible, f"o.{field.name}", "pos", 1)
    _flush_fixed_run(g, run)
    for field in absent:
        g.emit(1, f"o.{field.name} = {_default_expr(g, field)}")
    if flexible:
        g.emit(1, "count, pos = _tag_count(buf, pos)")
        g.emit(1, "if count:")
        if not tagged:
            g.emit(2, "pos = _skip_tagged(buf, pos, count)")
        else:
            g.emit(2, "for _ in range(count):")
            g.emit(3, "tag, pos = _uv(buf, pos)")
            g.emit(3, "size, pos = _uv(buf, pos)")
            g.emit(3, "end = pos + size")
            g.emit(3, "if end > len(buf):")
            g.emit(
                4,
                "raise _WireError(f'tagged field {tag} of {size} bytes at offset {pos} runs past the end')",
            )
            keyword = "if"
            for field in sorted(tagged, key=lambda fd: fd.tag or 0):
                g.emit(3, f"{keyword} tag == {field.tag}:")
                keyword = "elif"
                g.emit(4, "p = pos")
                _emit_read(g, field, version, flexible, f"o.{field.name}", "p", 4)
                g.emit(4, "if p != end:")
                g.emit(
                    5,
                    f"raise _WireError(f'tagged field {field.tag} ({field.name}) declares {{size}} bytes but holds {{p - pos}}')",
                )
            g.emit(3, "pos = end")
    g.emit(1, "return o, pos")
    return g.build("decode", f"{cls.__qualname__} v{version}", "decode", (cls, version, flexible))  # type: ignore[no-any-return]


def decoder(cls: type[Struct], version: int, flexible: bool) -> Decoder:
    """The compiled decoder of ``cls`` at ``version`` (built on first use)."""
    key = (cls, version, flexible)
    dec = _decoders.get(key)
    if dec is None:
        dec = _decoders[key] = _build_decoder(cls, version, flexible)
    return dec


# -- encoding -----------------------------------------------------------------------------


def _emit_write(
    g: _Gen, field: Field, version: int, flexible: bool, value: str, ind: int, parts: str = "parts"
) -> None:
    """Code appending ``value`` (an expression naming the field's value) to ``buf``."""
    ft = field.wire_type
    compact = flexible and field.compact
    nullable = field.is_nullable(version)
    if isinstance(ft, Primitive):
        if ft.fmt is not None:
            s = g.name(struct.Struct(">" + ft.fmt), "_s")
            g.emit(
                ind,
                f"buf += {s}.pack({value}.bytes)" if ft is t.UUID else f"buf += {s}.pack({value})",
            )
        elif ft is t.RECORDS:
            g.emit(
                ind,
                f"buf = {g.name(_writer('records', compact, nullable), '_w')}(buf, {parts}, {value})",
            )
        else:
            g.emit(ind, f"{g.name(_writer(ft.name, compact, nullable), '_w')}(buf, {value})")
        return
    if isinstance(ft, Array):
        el = ft.element
        g.emit(ind, f"x = {value}")
        if nullable:
            length = t.write_compact_array_length if compact else t.write_array_length
            g.emit(ind, f"{g.name(length, '_wl')}(buf, x)")
            g.emit(ind, "if x is not None:")
            ind += 1
        elif compact:
            g.emit(ind, "_wuv(buf, len(x) + 1)")
        else:
            g.emit(ind, "buf += _i32.pack(len(x))")
        if isinstance(el, Primitive) and el.fmt is not None and el is not t.UUID:
            g.emit(ind, f"buf += _pack('>%d{el.fmt}' % len(x), *x)")
        elif isinstance(el, Primitive):
            if el is t.UUID:
                g.emit(ind, "for e in x:")
                g.emit(ind + 1, "buf += e.bytes")
            else:
                w = g.name(_writer(el.name, compact, False), "_w")
                g.emit(ind, "for e in x:")
                g.emit(ind + 1, f"{w}(buf, e)")
        else:
            e = g.name(encoder(_struct(el), version, flexible), "_e")
            g.emit(ind, "for e in x:")
            g.emit(ind + 1, f"buf = {e}(e, buf, {parts})")
        return
    e = g.name(encoder(_struct(ft), version, flexible), "_e")
    if nullable:
        g.emit(ind, f"x = {value}")
        g.emit(ind, "if x is None:")
        g.emit(ind + 1, "buf += b'\\xff'")
        g.emit(ind, "else:")
        g.emit(ind + 1, "buf.append(1)")
        g.emit(ind + 1, f"buf = {e}(x, buf, {parts})")
    else:
        g.emit(ind, f"buf = {e}({value}, buf, {parts})")


def _build_encoder(cls: type[Struct], version: int, flexible: bool) -> Encoder:
    g = _Gen()
    g.emit(0, "def encode(o, buf, parts):")
    run: list[Field] = []
    tagged: list[Field] = []

    def flush() -> None:
        if not run:
            return
        fmt = ">" + "".join(_fmt(fd) for fd in run)
        s = g.name(struct.Struct(fmt), "_s")
        values = [f"o.{fd.name}.bytes" if _fixed(fd) is t.UUID else f"o.{fd.name}" for fd in run]
        g.emit(1, f"buf += {s}.pack({', '.join(values)})")
        run.clear()

    for field in cls.__kafka_fields__:
        if not field.present(version):
            continue
        if field.is_tagged(version):
            if flexible:
                tagged.append(field)
        elif _fixed(field) is not None:
            run.append(field)
        else:
            flush()
            _emit_write(g, field, version, flexible, f"o.{field.name}", 1)
    flush()
    if flexible:
        if not tagged:
            g.emit(1, "buf.append(0)")
        else:
            g.emit(1, "tags = []")
            for field in sorted(tagged, key=lambda fd: fd.tag or 0):
                g.emit(1, f"v = o.{field.name}")
                if field.default is UNSET:  # a list: present when not empty
                    g.emit(1, "if v:")
                elif field.default is None:
                    g.emit(1, "if v is not None:")
                else:
                    g.emit(1, f"if v != {_default_expr(g, field)}:")
                g.emit(2, "outer, buf = buf, bytearray()")
                _emit_write(g, field, version, flexible, "v", 2, parts="None")
                g.emit(2, f"tags.append(({field.tag}, buf))")
                g.emit(2, "buf = outer")
            g.emit(1, "if tags:")
            g.emit(2, "_write_tagged(buf, tags)")
            g.emit(1, "else:")
            g.emit(2, "buf.append(0)")
    g.emit(1, "return buf")
    return g.build("encode", f"{cls.__qualname__} v{version}", "encode", (cls, version, flexible))  # type: ignore[no-any-return]


def encoder(cls: type[Struct], version: int, flexible: bool) -> Encoder:
    """The compiled encoder of ``cls`` at ``version`` (built on first use)."""
    key = (cls, version, flexible)
    enc = _encoders.get(key)
    if enc is None:
        enc = _encoders[key] = _build_encoder(cls, version, flexible)
    return enc


def source_of(cls: type[Struct], version: int, flexible: bool, kind: str = "decode") -> str:
    """The generated source of a decoder or encoder, for reading and debugging."""
    (decoder if kind == "decode" else encoder)(cls, version, flexible)
    return _sources[(kind, cls, version, flexible)]


# -- entry points -------------------------------------------------------------------------


def read_struct(
    cls: type[Struct],
    version: int,
    flexible: bool,
    buf: memoryview,
    pos: int = 0,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> tuple[Any, int]:
    """Decode one ``cls`` at ``pos``; any malformation is a :class:`WireError`."""
    dec = decoder(cls, version, flexible)
    try:
        return dec(buf, pos, [max_elements])
    except (struct.error, IndexError):
        raise WireError(f"the {len(buf)}-byte message ends inside a {cls.__qualname__}") from None
    except (ValueError, OverflowError) as exc:  # WireError is not one of these
        raise WireError(f"{cls.__qualname__}: {exc}") from None


def read_message(
    cls: type[Struct], version: int, buf: memoryview, *, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> Any:
    """Decode a whole message body: exactly ``buf``, no byte left over."""
    obj, pos = read_struct(cls, version, flexible_of(cls, version), buf, max_elements=max_elements)
    if pos != len(buf):
        raise WireError(f"{len(buf) - pos} bytes left over after a {len(buf)}-byte message")
    return obj


_ENCODE_FAILURES = (EncodeError, struct.error, TypeError, AttributeError, ValueError, OverflowError)


def write_struct(
    obj: Struct, version: int, flexible: bool, buf: bytearray, parts: OutParts | None
) -> bytearray:
    """Append ``obj`` to ``buf`` (records parts going to ``parts``); returns the buffer to continue in."""
    enc = encoder(type(obj), version, flexible)
    try:
        return enc(obj, buf, parts)
    except _ENCODE_FAILURES as exc:
        where = _locate(obj, version, flexible) or "?"
        what = str(exc) if isinstance(exc, EncodeError) else f"{type(exc).__name__}: {exc}"
        raise EncodeError(f"{type(obj).__qualname__} v{version}: {where}: {what}") from None


def _field_encoder(field: Field, version: int, flexible: bool) -> Encoder:
    g = _Gen()
    g.emit(0, "def encode(o, buf, parts):")
    _emit_write(g, field, version, flexible, f"o.{field.name}", 1)
    g.emit(1, "return buf")
    source = "\n".join(g.lines) + "\n"
    exec(compile(source, f"<kafka field {field.name}>", "exec"), g.ns)
    return g.ns["encode"]  # type: ignore[no-any-return]


def _locate(obj: Struct, version: int, flexible: bool) -> str | None:
    """The path of the first field of ``obj`` that does not encode (the slow path of an
    error message: it names ``responses[0].partitions[3].records`` instead of guessing)."""
    for field in type(obj).__kafka_fields__:
        if not field.present(version) or (field.is_tagged(version) and not flexible):
            continue
        if field.is_tagged(version) and getattr(obj, field.name, None) in (None, field.default, []):
            continue  # an absent tagged field is not written
        try:
            _field_encoder(field, version, flexible)(obj, bytearray(), OutParts())
            continue
        except _ENCODE_FAILURES:
            pass
        value = getattr(obj, field.name, None)
        ft = field.wire_type
        if isinstance(ft, Array) and isinstance(ft.element, type) and isinstance(value, list):
            for i, element in enumerate(value):
                if isinstance(element, Struct) and type(element) is ft.element:
                    inner = _locate(element, version, flexible)
                    if inner:
                        return f"{field.name}[{i}].{inner}"
                else:
                    return f"{field.name}[{i}] (a {type(element).__name__}, not {ft.element.__qualname__})"
        elif isinstance(ft, type) and isinstance(value, Struct) and type(value) is ft:
            inner = _locate(value, version, flexible)
            if inner:
                return f"{field.name}.{inner}"
        return field.name
    return None


def encode_body(obj: Struct, version: int) -> bytes:
    """A message body as one ``bytes`` (records inlined): for tests and small messages."""
    buf = write_struct(obj, version, flexible_of(type(obj), version), bytearray(), None)
    return bytes(buf)
