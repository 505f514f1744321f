"""Charts of the warehouse's contents, as PNG files (for people who would rather look)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from pipeline.months import format_month  # noqa: E402
from pipeline.warehouse import Warehouse  # noqa: E402


def write_charts(
    warehouse: Warehouse, folder: Path, month: date, metric: str = "revenue"
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _pareto_curve(warehouse, folder, month, metric),
        _segments_by_month(warehouse, folder, metric),
        _tiers_by_month(warehouse, folder),
    ]


def _pareto_curve(warehouse: Warehouse, folder: Path, month: date, metric: str) -> Path:
    rows = warehouse.read_table("customer_abc", month)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for window in sorted(set(rows.column("window_months").to_pylist())):
        mask = pc.and_(pc.equal(rows["metric"], metric), pc.equal(rows["window_months"], window))
        subset = rows.filter(mask).sort_by("rank")
        n = subset.num_rows
        if n:
            x = [r / n for r in subset.column("rank").to_pylist()]
            ax.plot(x, subset.column("cum_share").to_pylist(), label=f"{window} month(s)")
    ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    ax.axvline(0.2, color="grey", linestyle=":", linewidth=1)
    ax.set(
        title=f"Pareto curve of {metric}, {format_month(month)}",
        xlabel="share of customers (ranked by value)",
        ylabel=f"cumulative share of {metric}",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(title="window")
    return _save(fig, folder / f"pareto_{metric}_{format_month(month)}.png")


def _segments_by_month(warehouse: Warehouse, folder: Path, metric: str) -> Path:
    rows = warehouse.read_table("customer_segment")
    rows = rows.filter(pc.equal(rows["metric"], metric))
    counts = rows.group_by(["month", "segment"]).aggregate([("customer_id", "count")])
    months = sorted(set(counts.column("month").to_pylist()))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bottom = [0] * len(months)
    for segment in ("vip", "good", "regular"):
        by_month = {
            r["month"]: r["customer_id_count"]
            for r in counts.to_pylist()
            if r["segment"] == segment
        }
        heights = [by_month.get(m, 0) for m in months]
        ax.bar([format_month(m) for m in months], heights, bottom=bottom, label=segment)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set(title=f"Customers per monthly segment (by {metric})", ylabel="customers")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, folder / f"segments_{metric}.png")


def _tiers_by_month(warehouse: Warehouse, folder: Path) -> Path:
    rows = warehouse.read_table("customer_tier")
    counts = rows.group_by(["month", "tier"]).aggregate([("customer_id", "count")]).to_pylist()
    months = sorted({r["month"] for r in counts})
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for tier in (1, 2, 3, 4):
        by_month = {r["month"]: r["customer_id_count"] for r in counts if r["tier"] == tier}
        ax.plot(
            [format_month(m) for m in months],
            [by_month.get(m, 0) for m in months],
            marker="o",
            markersize=3,
            label=f"Tier {tier}",
        )
    ax.set(title="Customers per profitability tier", ylabel="customers")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    ax.legend()
    return _save(fig, folder / "tiers.png")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
