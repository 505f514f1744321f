"""A realistic, seeded sample: payments of a few thousand customers over 24 months.

Customer sizes follow a Pareto distribution (a few customers bring most revenue),
with seasonality (a December peak), customers arriving and leaving, refunds, units
and cost (some customers are served at a loss) and a few duplicate deliveries.

Beside the payments: a small file of service activities (tickets, visits, deliveries,
returns, calls with hours and cost; a few customers eat most of the effort) and a
customers file with every customer's name and, for most, an account owner (three strategic).
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


ACTIVITY_KINDS = {
    # kind: (share of activities, typical hours, cost besides the hours: travel, freight)
    "ticket": (0.40, 0.5, 0.0),
    "call": (0.25, 0.25, 0.0),
    "visit": (0.15, 2.5, 60.0),
    "delivery": (0.12, 0.5, 25.0),
    "return": (0.08, 1.0, 30.0),
}
HOURLY_COST = 45.0  # EUR per staff hour
STRATEGIC = ("Fjord Freight AS", "Nordlys Hospital", "Havn Municipality")


def _needy_customers(spec: DemoSpec) -> tuple[np.ndarray, np.ndarray]:
    """The customers that call on the service team and how often (per month), from their
    own seed: the payments are the same with or without the activities."""
    rng = np.random.default_rng(spec.seed + 1)
    needy = np.flatnonzero(rng.random(spec.customers) < 0.08)
    intensity = rng.lognormal(-0.5, 1.0, len(needy))
    return needy, intensity


def write_activities(path: Path, spec: DemoSpec) -> int:
    """Write the sample service activities CSV ([service]); return the number of rows."""
    rng = np.random.default_rng(spec.seed + 2)
    needy, intensity = _needy_customers(spec)
    kinds = list(ACTIVITY_KINDS)
    shares = np.array([ACTIVITY_KINDS[k][0] for k in kinds])
    rows, number = [], 0
    for month in months_between(spec.first_month, spec.last_month):
        for customer, rate in zip(needy, intensity, strict=True):
            for _ in range(rng.poisson(rate)):
                number += 1
                kind = kinds[int(rng.choice(len(kinds), p=shares))]
                _, hours, extra = ACTIVITY_KINDS[kind]
                hours = max(0.25, round(hours * rng.lognormal(0, 0.5) * 4) / 4)
                cost = round(hours * HOURLY_COST + extra, 2)
                at = _random_time(rng, month).strftime("%Y-%m-%dT%H:%M:%SZ")
                rows.append(
                    (f"A{number:07d}", f"C{customer:05d}", at, kind, f"{hours:.2f}", f"{cost:.2f}")
                )
    rows.sort(key=lambda r: (r[2], r[0]))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["activity_id", "customer_id", "occurred_at", "kind", "hours", "cost"])
        writer.writerows(rows)
    return len(rows)


# the demo's account managers: each owns a share of the customers, the rest go to the
# default recipients (a call list per owner, as a real team gets it)
OWNERS = ("ana.berg@example.com", "jonas.lie@example.com", "mira.holm@example.com")
_NAME_FIRST = ("Nord", "Fjell", "Havn", "Sol", "Skog", "Elv", "Vik", "Berg", "Lys", "Stein")
_NAME_SECOND = ("bakeri", "frakt", "tre", "kafe", "bygg", "data", "helse", "fisk", "auto", "hage")


def write_customers(path: Path, spec: DemoSpec) -> int:
    """Write the sample customers CSV ([customers]): every customer's name, an account
    owner for three customers in four (the others go to the default recipients), and the
    three customers that call on the service team most, marked strategic (kept whatever
    they cost) and owned by key accounts."""
    rng = np.random.default_rng(spec.seed + 3)
    needy, intensity = _needy_customers(spec)
    busiest = [int(c) for c in needy[np.argsort(-intensity, kind="stable")]]
    strategic = dict(zip(busiest[:3], STRATEGIC, strict=True))
    rows = []
    for c in range(spec.customers):
        first, second = rng.integers(len(_NAME_FIRST)), rng.integers(len(_NAME_SECOND))
        owned = rng.random() < 0.75
        if c in strategic:
            rows.append((f"C{c:05d}", strategic[c], "key.accounts@example.com", "true"))
            continue
        name = f"{_NAME_FIRST[first]}{_NAME_SECOND[second]} {c}"
        owner = OWNERS[int(rng.integers(len(OWNERS)))] if owned else ""
        rows.append((f"C{c:05d}", name, owner, "false"))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "owner_email", "strategic"])
        writer.writerows(rows)
    return len(rows)


def write_config(folder: Path, spec: DemoSpec) -> Path:
    """The demo's tiers.toml; with [service] and [customers] when their files were written
    (write_activities, write_customers) in ``folder``."""
    path = folder / "tiers.toml"
    service = (
        """# service activities (tickets, visits, deliveries, returns, calls): the report's
# "Cost to serve" and tiers on the loaded margin
[service]
kind = "csv"
path = "activities.csv"

"""
        if (folder / "activities.csv").exists()
        else ""
    )
    customers = (
        """# customer names, owners and the strategic attribute (kept apart, never moved away from)
[customers]
kind = "csv"
path = "customers.csv"

"""
        if (folder / "customers.csv").exists()
        else ""
    )
    path.write_text(
        f"""# The demo's configuration (see README for every key).
[source]
kind = "csv"
path = "payments.csv"

[business]
timezone = "{DEMO_TIMEZONE}"
currency = "EUR"
history_start = "{format_month(spec.first_month)}"

{service}{customers}[lake]
root = "lake"

[warehouse]
url = "duckdb:///warehouse.duckdb"

[runs]
root = "runs"
"""
    )
    return path
