"""What the files under ``ops/`` say, read the way Prometheus and Grafana read them.

Shared by the ops tests: the dashboard's and the alert rules' PromQL expressions, the
metric names they use, and how an alert expression is reduced to the series it compares.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
PROMETHEUS_DIR = OPS / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = OPS / "grafana" / "strata.json"

#: Grafana's own variables, replaced the way Grafana would for a 1 s scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}

_METRIC = re.compile(r"\b((?:strata|process)_[a-zA-Z0-9_]+)\b")
_TRAILING_COMPARISON = re.compile(
    r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?(?:[0-9]*\.)?[0-9]+(?:e[-+]?[0-9]+)?\s*$", re.IGNORECASE
)
_SET_OPERATOR = re.compile(r"\s(and|or|unless)\s")


def require_tool(name: str) -> str:
    """The path of a Prometheus tool, or a failure saying how to get it (never a skip)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make ops-deps` (apt-get install prometheus); "
                    "the ops tests need Debian's prometheus package", pytrace=False)
    return path


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@dataclass(frozen=True, slots=True)
class Expr:
    where: str  # "panel 'Bytes in by topic' A" or "alert StrataBrokerDown"
    promql: str


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[Expr]:
    """Every target expression of every panel (rows included), Grafana variables substituted."""
    out = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            for t in p.get("targets", ()):
                expr = t["expr"]
                for var, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(var, value)
                out.append(Expr(f"panel {p['title']!r} {t.get('refId', '')}", expr))
            walk(p.get("panels", ()))

    walk(dashboard()["panels"])
    return out


def alert_rules(path: Path = ALERTS) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alert_exprs() -> list[Expr]:
    return [Expr(f"alert {r['alert']}", r["expr"]) for r in alert_rules() if "alert" in r]


def metric_names(promql: str) -> set[str]:
    """Names of Strata (and process) metrics an expression reads; ``up`` is Prometheus's own."""
    return set(_METRIC.findall(promql))


def _split_top_level(expr: str) -> list[str]:
    """Operands of top-level ``and``/``or``/``unless`` (not those inside parentheses)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(expr):
        c = expr[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == '"':
            i = expr.index('"', i + 1)
        elif depth == 0:
            m = _SET_OPERATOR.match(expr, i)
            if m:
                parts.append(expr[start:i])
                start = i = m.end()
                continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


def underlying(promql: str) -> list[str]:
    """What an alert compares, without the comparison.

    An alert expression is normally empty (``x > threshold`` selects nothing while all is
    well), so "it returns a series" is checked on its parts: each operand of a top-level
    ``and``/``or``/``unless`` with its trailing ``<op> <number>`` removed. Each part must
    return at least one series on a healthy cluster; then the alert can fire when the value
    crosses the threshold, and does not silently compare a metric that is never exported.
    """
    return [_TRAILING_COMPARISON.sub("", part) for part in _split_top_level(promql)]
