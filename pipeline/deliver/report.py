"""The month's report: one self-contained HTML page a manager opens (``tiers report``).

Built from the warehouse only (``report_data``), so any loaded month can be drawn again,
from DuckDB or PostgreSQL. Charts are Vega-Lite specifications made with Altair
(``report_charts``) and drawn in the page by Vega-Embed, whose JavaScript (from
vl-convert) is inlined with the data: the page loads nothing from the network. The page
is deterministic: the same warehouse contents give the same bytes (no generation time
stamp).

Where it goes: ``<runs.root>/<run_id>/month=YYYY-MM/report.html`` for the run's step
(``pipeline.run.steps.report_step``), ``<runs.root>/reports/YYYY-MM-<metric>.html`` when
drawn again with ``tiers report``.
"""

from __future__ import annotations

import json
import math
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.deliver.report_charts import (
    list_quality_chart,
    overlap_chart,
    pareto_chart,
    service_charts,
    tier_chart,
    vega_bundle,
    whale_chart,
)
from pipeline.deliver.report_data import CLASSES, ReportData, collect
from pipeline.files import atomic_write
from pipeline.months import format_month
from pipeline.storage import location

SECTIONS = (
    "headline",
    "pareto",
    "migration",
    "roster",
    "calls",
    "tiers",
    "overlap",
    "health",
)


def default_report_path(cfg: Config, month: date, metric: str) -> Path:
    """Where ``tiers report`` writes a month's page drawn again later."""
    return location(cfg.runs.root) / "reports" / f"{format_month(month)}-{metric}.html"


def write_report(
    cfg: Config,
    month: date,
    path: Path | None = None,
    *,
    metric: str | None = None,
    run_id: str | None = None,
) -> tuple[Path, str, str | None]:
    """Write the month's page (atomically); return its path, metric and the run it shows."""
    from pipeline.warehouse import open_warehouse

    warehouse = open_warehouse(cfg)
    try:
        data = collect(cfg, warehouse, month, metric=metric, run_id=run_id)
    finally:
        warehouse.close()
    path = location(path) if path else default_report_path(cfg, month, data.metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render(data))
    return path, data.metric, data.run["run_id"] if data.run else None


def _script_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def template_environment(**options: Any):
    """Jinja2 over ``pipeline/templates/`` (the report and the call-list mails): HTML
    escaped, a missing variable is an error, not an empty string."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        **options,
    )


def render(data: ReportData) -> str:
    env = template_environment(keep_trailing_newline=True)
    integer = data.metric in ("payments", "units")
    env.filters |= {
        "money": lambda v: _money(v),
        "value": lambda v: _value(v, integer),
        "signed_value": lambda v: _signed(v, integer),
        "pct": lambda v, digits=1: "—" if v is None else f"{100 * v:.{digits}f} %",
        "points": lambda v: "—" if v is None else f"{100 * v:+.1f} pts",
        "ratio": lambda v: "—" if v is None else f"{v:.3f}",
        "signed_ratio": lambda v: "—" if v is None else f"{v:+.3f}",
        "count": lambda v: "—" if v is None else f"{v:,}",
        "signed_count": lambda v: "—" if v is None else f"{v:+,}",
        "month": format_month,
        "spark": _sparkline,
        "exact": lambda v: "" if v is None else str(v),
    }
    charts = {
        "pareto": pareto_chart(data),
        "whale": whale_chart(data) if data.whale else None,
        "tiers": tier_chart(data) if data.tier_window else None,
        "overlap": overlap_chart(data) if data.overlap else None,
        "list_quality": list_quality_chart(data) if len(data.list_quality) > 1 else None,
        **service_charts(data),
    }
    template = env.get_template("report.html.j2")
    return template.render(
        d=data,
        classes=CLASSES,
        migration_from=[*CLASSES, "new"],
        migration_to=[*CLASSES, "lost"],
        unit=data.currency if not integer else data.metric,
        charts={k: _script_json(v) for k, v in charts.items() if v is not None},
        vega_bundle=vega_bundle(),
        sections=SECTIONS,
    )


def _money(value) -> str:
    return "—" if value is None else f"{Decimal(value):,.2f}"


def _value(value, integer: bool) -> str:
    if value is None:
        return "—"
    return f"{int(value):,}" if integer else f"{Decimal(value):,.2f}"


def _signed(value, integer: bool) -> str:
    if value is None:
        return "—"
    return f"{int(value):+,}" if integer else f"{Decimal(value):+,.2f}"


_BLOCKS = "▁▂▃▄▅▆▇█"


def _sparkline(values: list[Decimal]) -> str:
    """Six months as block characters, the lowest value (or 0) at the bottom."""
    low = min([Decimal(0), *values])
    high = max(values, default=Decimal(0))
    if high == low:
        return _BLOCKS[0] * len(values)
    return "".join(
        _BLOCKS[min(len(_BLOCKS) - 1, math.floor((v - low) / (high - low) * len(_BLOCKS)))]
        for v in values
    )
