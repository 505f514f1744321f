"""The input contract: the canonical columns of each source (the payments, the optional
service activities, the customer attributes), those a source must have, and the metrics
they allow. A source names its own columns in [<section>.columns]; everything after the
source reads these names.
"""

from __future__ import annotations

CANONICAL_COLUMNS = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost")
REQUIRED_COLUMNS = ("payment_id", "customer_id", "paid_at", "amount")
# the optional [service] source of service activities (spec: "Service effort and cost to
# serve"): tickets, visits, deliveries, returns, calls
SERVICE_COLUMNS = ("activity_id", "customer_id", "occurred_at", "hours", "cost", "kind")
SERVICE_REQUIRED_COLUMNS = ("activity_id", "customer_id", "occurred_at")
CUSTOMER_COLUMNS = ("customer_id", "name", "owner_email")
ALL_METRICS = ("revenue", "payments", "units", "margin")


def metrics_available(*, has_units: bool, has_margin: bool) -> list[str]:
    """The metrics a source allows: units needs a units column, margin a cost column."""
    allowed = {"revenue": True, "payments": True, "units": has_units, "margin": has_margin}
    return [m for m in ALL_METRICS if allowed[m]]
