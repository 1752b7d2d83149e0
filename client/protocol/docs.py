"""docs/protocol.md's reference section, rendered from the API schemas."""

from __future__ import annotations

from .apis import SCHEMAS
from .schema import List, Nullable, Struct


def _render_struct(s: Struct, indent: int) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    for f in s.fields:
        t = f.type
        inner: Struct | None = None
        while isinstance(t, Nullable | List):
            t = t.inner if isinstance(t, Nullable) else t.item
        if isinstance(t, Struct):
            inner = t
        tname = f.type.name
        need = "required" if f.required else f"default {f.default!r}"
        doc = f" — {f.doc}" if f.doc else ""
        lines.append(f"{pad}- `{f.name}`: {tname}, {need}{doc}")
        if inner is not None:
            lines.extend(_render_struct(inner, indent + 1))
    return lines


def render_schemas() -> str:
    """Markdown for every API version's schema (the reference part of docs/protocol.md)."""
    out: list[str] = []
    for (api, version), schema in SCHEMAS.items():
        out.append(f"### {api.name} ({int(api)}) v{version}")
        out.append("")
        if schema.doc:
            out.extend([schema.doc, ""])
        out.append("Request:")
        out.append("")
        out.extend(_render_struct(schema.request, 0) or ["- (no fields)"])
        if schema.request_payload:
            out.append(f"- payload: {schema.request_payload}")
        out.extend(["", "Response:", ""])
        out.extend(_render_struct(schema.response, 0))
        if schema.response_payload:
            out.append(f"- payload: {schema.response_payload}")
        out.append("")
    return "\n".join(out)

