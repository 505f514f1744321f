"""A realistic, seeded sample: payments of a few thousand customers over 24 months.

Customer sizes follow a Pareto distribution (a few customers bring most revenue),
with seasonality (a December peak), customers arriving and leaving, refunds, units
and cost (some customers are served at a loss) and a few duplicate deliveries.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from pipeline.months import add_months, format_month, months_between

DEMO_FIRST_MONTH = date(2024, 11, 1)
DEMO_MONTHS = 24
DEMO_TIMEZONE = "Europe/Oslo"


@dataclass(frozen=True)
class DemoSpec:
    customers: int = 3000
    months: int = DEMO_MONTHS
    first_month: date = DEMO_FIRST_MONTH
    seed: int = 20261123

    @property
    def last_month(self) -> date:
        return add_months(self.first_month, self.months - 1)


def write_payments(path: Path, spec: DemoSpec) -> int:
    """Write the sample payments CSV; return the number of rows written."""
    rng = np.random.default_rng(spec.seed)
    months = months_between(spec.first_month, spec.last_month)
    n = spec.customers
    size = (rng.pareto(1.2, n) + 1) * 40  # mean monthly spend, EUR
    arrival = np.where(rng.random(n) < 0.6, 0, rng.integers(0, spec.months, n))
    lifetime = rng.geometric(1 / 30, n)  # months until the customer leaves
    unit_price = rng.uniform(15, 90, n)
    cost_ratio = rng.uniform(0.55, 1.05, n)  # cost of goods as a share of the amount

    rows = []
    payment_no = 0
    for index, month in enumerate(months):
        season = 1 + 0.25 * math.cos(2 * math.pi * (month.month - 12) / 12)
        active = (arrival <= index) & (index < arrival + lifetime)
        for customer in np.flatnonzero(active):
            expected_payments = min(12.0, 0.6 + math.sqrt(size[customer]) / 6) * season
            for _ in range(rng.poisson(expected_payments)):
                payment_no += 1
                amount = round(size[customer] / expected_payments * rng.lognormal(0, 0.35), 2)
                units = max(1, round(amount / unit_price[customer]))
                cost = round(amount * cost_ratio[customer] + 1.5, 2)
                paid_at = _random_time(rng, month)
                rows.append(_row(payment_no, customer, paid_at, amount, units, cost))
                if rng.random() < 0.03:  # a refund, a few days later
                    payment_no += 1
                    refund = -round(amount * rng.choice([1.0, 0.5]), 2)
                    later = paid_at + timedelta(days=int(rng.integers(1, 20)))
                    rows.append(_row(payment_no, customer, later, refund, 0, 0.0))
                if rng.random() < 0.005:  # the same payment delivered twice
                    rows.append(rows[-1])
    rows.sort(key=lambda r: r[2])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost"]
        )
        writer.writerows(rows)
    return len(rows)


def _random_time(rng: np.random.Generator, month: date) -> datetime:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime.combine(add_months(month, 1), datetime.min.time(), tzinfo=UTC)
    return start + timedelta(seconds=int(rng.integers(0, int((end - start).total_seconds()))))


def _row(number: int, customer: int, paid_at: datetime, amount: float, units: int, cost: float):
    return (
        f"P{number:08d}",
        f"C{customer:05d}",
        paid_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{amount:.2f}",
        "EUR",
        str(units),
        f"{cost:.2f}",
    )


def write_config(folder: Path, spec: DemoSpec) -> Path:
    path = folder / "tiers.toml"
    path.write_text(
        f"""# The demo's configuration (see README for every key).
[source]
kind = "csv"
path = "payments.csv"

[business]
timezone = "{DEMO_TIMEZONE}"
currency = "EUR"
history_start = "{format_month(spec.first_month)}"

[lake]
root = "lake"

[warehouse]
url = "duckdb:///warehouse.duckdb"

[runs]
root = "runs"
"""
    )
    return path
