"""Gate reports on disk: GX's validation results as JSON and one readable HTML page.

GX 1.x renders data docs only through a file-backed data context; the gates run on an
ephemeral one, so the page is rendered here: one row per check (status, severity, the
GX expectation, how many values or rows broke it, examples), then every GX validation
(one per validated table and batch) with its statistics. The JSON holds the report and
each GX ``ExpectationSuiteValidationResult`` as GX serialises it.
"""

from __future__ import annotations

import html
import json
import math
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.files import atomic_write
from pipeline.gates.results import GateReport, brief
from pipeline.storage import location


def plain(value: Any) -> Any:
    """A JSON-ready copy of a value from GX, pandas or Arrow (exact decimals as text)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):  # numpy's float64 too
        return None if math.isnan(value) else float(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return None if str(value) == "NaT" else value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return None if str(value) in ("<NA>", "nan", "NaT") else str(value)


def write(report: GateReport, validations: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """Write ``<out_dir>/gates/<gate>.json`` and ``.html``; return their paths."""
    folder = location(out_dir) / "gates"
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / f"{report.gate}.json", folder / f"{report.gate}.html"
    files = [str(json_path), str(html_path)]
    document = report.to_dict() | {"files": files, "gx_validation_results": validations}
    atomic_write(json_path, json.dumps(document, indent=2, default=str) + "\n")
    atomic_write(html_path, render_html(report, validations))
    return files


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.passed { color: #176c2e; font-weight: bold; }
.failed { color: #b00020; font-weight: bold; }
.warning { color: #a15c00; font-weight: bold; }
code { font-size: 90%; }
"""


def render_html(report: GateReport, validations: list[dict[str, Any]]) -> str:
    e = html.escape
    if not report.enabled:
        verdict = '<span class="warning">checks disabled</span>'
    elif report.passed:
        verdict = '<span class="passed">passed</span>'
    else:
        verdict = '<span class="failed">FAILED</span>'
    rows = []
    for r in report.results:
        status = "passed" if r.success else ("failed" if r.severity == "error" else "warning")
        examples = "<br>".join(e(brief(x)) for x in r.examples)
        rows.append(
            f'<tr><td class="{status}">{status}</td><td><code>{e(r.check)}</code></td>'
            f"<td>{e(r.severity)}</td><td><code>{e(r.expectation)}</code></td>"
            f"<td>{r.unexpected_count}</td><td>{e(r.detail)}</td><td>{examples}</td></tr>"
        )
    runs = []
    for v in validations:
        stats = v["result"].get("statistics", {})
        checked = sorted(r["expectation_config"]["meta"]["check"] for r in v["result"]["results"])
        runs.append(
            f"<tr><td>{e(v['subject'])}</td><td>{e(v['batch'])}</td><td>{v['rows']}</td>"
            f"<td>{stats.get('evaluated_expectations', '')}</td>"
            f"<td>{stats.get('successful_expectations', '')}</td>"
            f"<td>{'yes' if v['result'].get('success') else 'no'}</td>"
            f"<td>{', '.join(f'<code>{e(c)}</code>' for c in checked)}</td></tr>"
        )
    inputs = "".join(f"<li><code>{e(i)}</code></li>" for i in report.inputs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>gate {e(report.gate)} {e(report.month)}</title><style>{_STYLE}</style></head>
<body>
<h1>Gate <code>{e(report.gate)}</code>, month {e(report.month)}: {verdict}</h1>
<p>{report.n_passed} passed, {report.n_failed} failed, {report.n_warned} warning(s)
of {len(report.results)} checks, in {report.seconds:.2f} s.</p>
<table><tr><th>status</th><th>check</th><th>severity</th><th>GX expectation</th>
<th>unexpected</th><th>detail</th><th>examples</th></tr>
{"".join(rows)}
</table>
<h2>Validated</h2><ul>{inputs}</ul>
<h2>Great Expectations validations</h2>
<table><tr><th>table</th><th>batch</th><th>rows</th><th>expectations</th><th>successful</th>
<th>success</th><th>checks</th></tr>
{"".join(runs)}
</table>
<p>The full GX results are in <code>{e(report.gate)}.json</code>.</p>
</body></html>
"""
