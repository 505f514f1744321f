"""What the `tiers` commands print: the backfill's progress bar, the monthly summary and
the backtest's table (``console`` is standard output)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.cli_errors import print_error
from pipeline.config import Config
from pipeline.months import format_month

console = Console()


def progress(months: list[date], run: Callable[[Callable], list]) -> list:
    """``run(advance)`` under a progress bar of ``months``; then each failed month's error."""
    failures = []
    with Progress(
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("", total=len(months))

        def advance(result) -> None:
            if result.status != "loaded":
                failures.append(result)
            progress.update(task, advance=1, description=format_month(result.month))

        results = run(advance)
    for failure in failures:
        print_error(f"{format_month(failure.month)} failed:", failure.error or "")
    return results


def summary(cfg: Config, results: list) -> None:
    """One line per loaded month, from the month's own run record (never a warehouse scan)."""
    from pipeline.run.state import month_headline

    loaded = sorted((r for r in results if r.status == "loaded"), key=lambda r: r.month)
    if not loaded:
        return
    lines = [(r.month, month_headline(cfg, r.month, r.run_id) or {}) for r in loaded]
    metric = next((h["metric"] for _, h in lines if h.get("metric")), "revenue")
    table = Table(title=f"Monthly summary (metric: {metric}, window 1)")
    for column in ("month", "customers", "VIPs", "A", "B", "C", "alerts", metric):
        table.add_column(column, justify="right")
    for month, h in lines:
        table.add_row(
            format_month(month),
            *(str(h.get(k, 0)) for k in ("customers", "vips", "class_a", "class_b", "class_c")),
            str(h.get("alerts", 0)),
            f"{Decimal(h.get('value', '0')):,}",
        )
    console.print(table)


def backtest_table(rows: list[dict], metric: str, top: int) -> Table:
    """``tiers backtest``'s rows: one per judged month, then the overall row."""
    table = Table(
        title=f"How the call lists did ({metric}): share leaving 3 months later, value that left",
        caption=f"all: every alert; stake: the first {top} by value at stake; rank: the first "
        f"{top} by call_rank. Leaving: value over the 3 months after below half of the 3 before.",
    )
    for heading in ("month", "alerts", "all", "stake", "rank", "left: all", "stake", "rank"):
        table.add_column(heading, justify="right", no_wrap=True)

    def share(value) -> str:
        return "-" if value is None else f"{value:.0%}"

    for r in rows:
        table.add_row(
            format_month(r["month"]) if r["month"] else "overall",
            str(r["alerts"]),
            share(r["leaving_all"]),
            share(r["leaving_top_stake"]),
            share(r["leaving_top_call"]),
            f"{r['value_left_all'] or 0:,.0f}",
            f"{r['value_left_top_stake'] or 0:,.0f}",
            f"{r['value_left_top_call'] or 0:,.0f}",
        )
    return table
