"""The month's SQL models in one ordered list: every table of a month, in the order it is built.

A month is built in two places. The extract runs the models of the lake partition on each
month it publishes (``PAYMENT_MODELS``, ``ACTIVITY_MODELS``); the computation of month M
runs the rest on what those wrote for M-11 .. M. The extract's models are listed in
``pipeline/lake/derived.py``: the lake sits below the computation and runs them, so it may
not import them from here. ``MONTH_ORDER`` places both in the one order.

Each model is (sql file, the table it creates, {relation the file reads: the query read
instead}); every file is a query. The reporting tables are the rows of month M of the
tables named like them (``REPORTING_SOURCE`` names the others).
"""

from __future__ import annotations

from pipeline.lake.derived import ACTIVITY_MODELS, PAYMENT_MODELS

Model = tuple[str, str, dict[str, str]]

# The computation of month M, in dependency order, on the lake's customer_month and window-1
# rankings of the months read (a partition of lake schema version 1 has none: its payments
# are aggregated by customer_month.sql first, and its window 1 ranked by customer_ranking).
MONTH_MODELS: tuple[Model, ...] = (
    ("customer_month_history", "customer_month_history", {}),
    ("customer_window_values", "window_values", {}),
    ("customer_ranking", "computed_ranking", {}),
    ("customer_rank", "customer_rank", {}),
    ("customer_xyz", "customer_xyz", {}),
    ("customer_abc", "customer_abc", {}),
    ("customer_segment", "customer_segment", {}),
    ("vip_roster_membership", "vip_roster_membership", {}),
    ("vip_roster", "vip_roster", {}),
    ("vip_roster_change", "vip_roster_change", {}),
    ("customer_alert", "customer_alert", {}),
    ("customer_tier", "customer_tier", {}),
    ("pareto_summary", "pareto_summary", {}),
    ("criteria_overlap", "criteria_overlap", {}),
)
# The call list, after MONTH_MODELS: the alerts' features, then (in Python, between the two:
# pipeline/compute/call_score.py) their risk, customer_risk, then their call order.
CALL_MODELS: tuple[Model, ...] = (
    ("call_features", "call_features", {}),
    ("customer_call", "customer_call", {}),
)
# With a [service] source, after CALL_MODELS (spec: "Service effort and cost to serve"):
# customer_ranking.sql and customer_rank.sql rank the effort (and the tier window's revenue
# and loaded margin) as they rank the metrics, pareto_summary.sql summarises the effort,
# customer_tier_loaded.sql replaces customer_tier.
SERVICE_MODELS: tuple[Model, ...] = (
    ("customer_service_history", "customer_service_history", {}),
    ("service_window_values", "service_window_values", {}),
    (
        "customer_ranking",
        "service_ranking",
        {"window_values": "select * from service_window_values"},
    ),
    (
        "customer_rank",
        "service_rank",
        {
            "monthly_ranking": "select * from service_ranking where false",
            "computed_ranking": "select * from service_ranking",
        },
    ),
    (
        "pareto_summary",
        "effort_pareto_summary",
        {"customer_rank": "select * from service_rank where metric = 'effort'"},
    ),
    ("customer_service_profile", "customer_service_profile", {}),
    ("customer_service_kind", "customer_service_kind", {}),
    ("customer_tier_loaded", "customer_tier_with_service", {}),
)
SERVICE_METRICS = ("effort", "revenue", "loaded_margin")
REPORTING_SOURCE = {
    "customer_month": "customer_month_history",
    "customer_service": "customer_service_history",
}

# Every model of a month, in the order its tables are built: at extract (each month read,
# once, when it is published), then at the computation of the month.
MONTH_ORDER: tuple[Model, ...] = (
    *PAYMENT_MODELS,
    *ACTIVITY_MODELS,
    *MONTH_MODELS,
    *CALL_MODELS,
    *SERVICE_MODELS,
)
