"""The reporting tables: names, columns, types and grain (the spec's contract).

One definition serves the SQL outputs' column order, the DuckDB and PostgreSQL DDL,
the checks and the descriptions BI tools show (``COMMENT ON``). Logical types: date,
text, int, bigint, money (exact DECIMAL(18,2)), float (double precision), bool,
timestamp (with time zone), json.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    indexes: tuple[str, ...] = ()  # columns dashboards filter by
    # the order of a month's rows in its file: a total order (same rows, same bytes). The
    # key without month (one month a file) unless a cheaper one is given: DuckDB sorts
    # integers several times faster than customer ids.
    file_order: tuple[str, ...] = ()
    # the optional [service] source (spec: "Service effort and cost to serve"): a table
    # computed only with it, and columns of a table that only a month computed with it has
    # (a month computed without it gives the table without them: the same bytes as before)
    service_only: bool = False
    service_columns: tuple[str, ...] = ()

    def without_service(self) -> Table:
        """The table as a month computed without a [service] source has it."""
        return Table(
            self.name,
            tuple(c for c in self.columns if c[0] not in self.service_columns),
            self.key,
            self.indexes,
            self.file_order,
        )

    @property
    def row_order(self) -> tuple[str, ...]:
        return self.file_order or tuple(c for c in self.key if c != "month")

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in self.columns])

    def duckdb_columns(self) -> str:
        """The select list that gives DuckDB's rows this table's columns and types."""
        return ", ".join(
            f'CAST("{name}" AS {DUCKDB_TYPES[kind]}) AS "{name}"' for name, kind in self.columns
        )


ARROW_TYPES = {
    "date": pa.date32(),
    "text": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "money": pa.decimal128(18, 2),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}

DUCKDB_TYPES = {
    "date": "DATE",
    "text": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "money": "DECIMAL(18, 2)",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "json": "VARCHAR",
}

REPORTING_TABLES: tuple[Table, ...] = (
    Table(
        "customer_month",
        (
            ("month", "date"),
            ("customer_id", "text"),
            ("revenue", "money"),
            ("gross_revenue", "money"),
            ("refunds", "money"),
            ("payments", "int"),
            ("units", "bigint"),
            ("margin", "money"),
        ),
        key=("month", "customer_id"),
        indexes=("customer_id",),
    ),
    Table(
        "customer_abc",
        (
            ("month", "date"),
            ("metric", "text"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("value", "money"),
            ("rank", "int"),
            ("share", "float"),
            ("cum_share", "float"),
            ("abc_class", "text"),
            ("xyz_class", "text"),
        ),
        key=("month", "metric", "window_months", "customer_id"),
        indexes=("customer_id", "abc_class"),
        file_order=("metric", "window_months", "rank"),  # rank: row_number() of a ranking
    ),
    Table(
        "customer_segment",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("value", "money"),
            ("rank", "int"),
            ("segment", "text"),
            ("movement", "text"),
        ),
        key=("month", "metric", "customer_id"),
        indexes=("customer_id", "segment"),
        file_order=("metric", "rank"),  # rank: row_number() of the metric's ranking
    ),
    Table(
        "vip_roster",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("months_as_vip", "int"),
            ("first_vip_month", "date"),
            ("last_vip_month", "date"),
            ("is_vip_this_month", "bool"),
            ("missed_by_period_method", "bool"),
        ),
        key=("month", "metric", "customer_id"),
        indexes=("customer_id",),
    ),
    Table(
        "vip_roster_change",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("change", "text"),
        ),
        key=("month", "metric", "customer_id"),
    ),
    Table(
        "customer_alert",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("alert", "text"),
            ("detail", "text"),
        ),
        key=("month", "metric", "customer_id", "alert"),
        indexes=("customer_id",),
    ),
    Table(
        "customer_call",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("alert", "text"),
            ("call_rank", "int"),
            ("priority", "text"),
            ("share_kept", "float"),
            ("p_alive", "float"),
            ("expected_payments", "float"),
            ("expected_value", "money"),
            ("recent_value", "money"),
            ("value_at_risk", "money"),
            ("paying_days", "int"),
            ("days_between", "float"),
            ("quiet_days", "int"),
            ("vip_dips", "int"),
            ("vip_returns", "int"),
            ("owner_email", "text"),
            ("call_reason", "text"),
        ),
        key=("month", "metric", "customer_id", "alert"),
        indexes=("customer_id", "owner_email"),
        file_order=("metric", "call_rank"),
    ),
    Table(
        "customer_tier",
        (
            ("month", "date"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("revenue", "money"),
            ("margin", "money"),
            ("margin_pct", "float"),
            ("tier", "int"),
            ("cost_to_serve", "money"),
            ("loaded_margin", "money"),
            ("loaded_margin_pct", "float"),
        ),
        key=("month", "window_months", "customer_id"),
        indexes=("customer_id", "tier"),
        service_columns=("cost_to_serve", "loaded_margin", "loaded_margin_pct"),
    ),
    Table(
        "pareto_summary",
        (
            ("month", "date"),
            ("metric", "text"),
            ("window_months", "int"),
            ("n_customers", "int"),
            ("total_value", "money"),
            ("top20_share", "float"),
            ("n_class_a", "int"),
            ("n_class_b", "int"),
            ("n_class_c", "int"),
            ("gini", "float"),
            ("hhi", "float"),
            ("top1_share", "float"),
        ),
        key=("month", "metric", "window_months"),
    ),
    Table(
        "criteria_overlap",
        (
            ("month", "date"),
            ("metric_a", "text"),
            ("metric_b", "text"),
            ("n_a", "int"),
            ("n_b", "int"),
            ("n_both", "int"),
            ("jaccard", "float"),
        ),
        key=("month", "metric_a", "metric_b"),
    ),
    Table(
        "customer_service",
        (
            ("month", "date"),
            ("customer_id", "text"),
            ("activities", "int"),
            ("hours", "money"),
            ("cost_to_serve", "money"),
        ),
        key=("month", "customer_id"),
        indexes=("customer_id",),
        service_only=True,
    ),
    Table(
        "customer_service_profile",
        (
            ("month", "date"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("revenue", "money"),
            ("effort", "money"),
            ("revenue_share", "float"),
            ("effort_share", "float"),
            ("revenue_class", "text"),
            ("effort_class", "text"),
            ("profile", "text"),
        ),
        key=("month", "window_months", "customer_id"),
        indexes=("customer_id", "profile"),
        service_only=True,
    ),
    Table(
        "customer_service_kind",
        (
            ("month", "date"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("kind", "text"),
            ("activities", "int"),
            ("effort", "money"),
            ("cost_to_serve", "money"),
            ("kind_rank", "int"),
        ),
        key=("month", "window_months", "customer_id", "kind"),
        indexes=("customer_id",),
        service_only=True,
    ),
)

PIPELINE_RUN = Table(
    "pipeline_run",
    (
        ("run_id", "text"),
        ("month", "date"),
        ("status", "text"),  # loaded | provisional | failed
        ("rows_read", "bigint"),
        ("rows_duplicate", "bigint"),
        ("rows_quarantined", "bigint"),
        ("rows_loaded", "bigint"),
        ("checks_passed", "int"),
        ("checks_failed", "int"),
        ("checks_warned", "int"),
        ("check_results", "json"),
        ("error", "text"),
        ("source_fingerprint", "text"),
        ("started_at", "timestamp"),
        ("finished_at", "timestamp"),
        ("attempt", "int"),  # 1, 2, ... per (run_id, month): retries reuse a run id
        ("recorded_at", "timestamp"),
        # last, as an existing PostgreSQL warehouse adds it
        ("rows_rounded", "bigint"),
    ),
    key=("run_id", "month", "attempt"),
)

# Customer attributes from the optional [customers] source (pipeline.sources.customers): not
# month-partitioned, replaced whole by each load; the BI views join names and owners on it.
CUSTOMER = Table(
    "customer",
    (("customer_id", "text"), ("name", "text"), ("owner_email", "text"), ("attributes", "json")),
    key=("customer_id",),
    indexes=("owner_email",),
)

TABLES = {table.name: table for table in REPORTING_TABLES}


def month_tables(service: bool) -> tuple[Table, ...]:
    """The reporting tables a month computes, as it computes them: with a [service] source
    every table, without one the tables and columns of before it."""
    if service:
        return REPORTING_TABLES
    return tuple(t.without_service() for t in REPORTING_TABLES if not t.service_only)


# the pipeline_run statuses of an attempt whose tables the warehouse holds
LOADED = ("loaded", "provisional")
# every table the warehouse holds
WAREHOUSE_TABLES = (*REPORTING_TABLES, PIPELINE_RUN, CUSTOMER)

# --- descriptions BI tools show (COMMENT ON) -------------------------------------------

# Every table and view of the warehouse, in the business's words.
DESCRIPTIONS = {
    "customer_month": "Per month and customer who paid: revenue (net of refunds), gross "
    "revenue, refunds, payments, units and margin.",
    "customer_abc": "Per month, metric and window (1, 3, 6, 12 months): each customer's value, "
    "rank, share and ABC class (A = first 80 % of value, B = next 15 %, C = the rest); XYZ "
    "stability class on the 12-month window. Filter on metric and window_months.",
    "customer_segment": "Per month and metric: each paying customer's VIP / good / regular "
    "segment and movement (new_vip, kept_vip, dropped_vip). Filter on metric.",
    "vip_roster": "Per month and metric: every customer VIP in at least one of the last 6 "
    "months (the rolling roster). Filter on metric.",
    "vip_roster_change": "Per month and metric: customers added to or removed from the "
    "rolling VIP roster.",
    "customer_alert": "Per month and metric: alerts (vip_stopped_paying, vip_dropped, "
    "margin_erosion); the numbers are columns of vip_call_list.",
    "customer_call": "Per month and metric: each alert of customer_alert in the order to "
    "call (call_rank 1 first), with the customer's risk from a BG/NBD model of its paying "
    "days (P(alive), expected payments and value over the next 3 months, value at risk) and "
    'priority call or watch (README "The call list").',
    "customer_tier": "Per month and window: each customer's profitability tier (1 ideal, "
    "2 good earner, 3 break-even, 4 money loser); names in customer_tier_named.",
    "pareto_summary": "Per month, metric and window: concentration of value (top-20 % share, "
    "class counts, Gini, HHI).",
    "criteria_overlap": "Per month and pair of metrics: how far the VIP lists by the two "
    "metrics overlap (Jaccard index).",
    "customer_service": "Per month and customer served: service activities, staff hours and "
    "cost to serve (from the [service] source; empty without it).",
    "customer_service_kind": "Per month over the tier window: each served customer's "
    "activities, effort and cost to serve by kind of activity (ticket, visit, ...); "
    "kind_rank 1 is the kind that took the most effort.",
    "customer_service_profile": "Per month over the tier window: each customer's revenue "
    "and service effort, their shares and ABC classes, and the profile (best, good, "
    "troublesome = class A by effort and revenue share below half its effort share).",
    "pipeline_run": "One row per attempt to run a month (a retry or re-run adds a row): "
    "status, row counts, checks, error. Which attempt a month holds: month_load.",
    "customer": "Customer attributes from the [customers] source as of the last load: name, "
    "account owner and the source's other columns (attributes, JSON). Empty without it.",
    "schema_version": "Migrations applied to this warehouse schema (PostgreSQL).",
    "schema_views": "Digest of the BI views last created (PostgreSQL).",
    "month_load": "Per loaded month: the run (and attempt) whose data the month holds now, "
    "and the status of the month's last attempt.",
    "current_month": "The last loaded month: what latest_* and is_current refer to.",
    "tier_name": "Profitability tiers 1..4 and their names.",
    "customer_tier_named": "customer_tier with each tier's name beside its number.",
    "customer_class_migration": "customer_abc with the customer's class, rank and value in "
    "the previous month (same metric and window) and the move between them.",
    "latest_customer_segment": "The current (last loaded) month's segment of each customer "
    "who paid in it, per metric. Filter on metric.",
    "latest_customer_class": "The current month's ABC / XYZ class of each ranked customer, "
    "per metric and window, with last month's class.",
    "latest_customer_tier": "The current month's profitability tier of each customer, per "
    "window, with the tier's name.",
    "current_vip": "The current month's VIPs per metric, with their previous rank and value "
    "and months on the roster. Filter on metric.",
    "vip_call_list": "Every alert with its numbers as columns: previous and current rank and "
    "value, months as VIP, last month with a payment, value at stake. Filter on metric.",
    "vip_exit": "Who left VIP and how: dropped_vip (still paying, fell below the VIP cut), "
    "stopped_paying (VIP last month, no payment this month), removed_from_roster (not VIP "
    "for 6 months). Filter on metric.",
    "troublesome_customers": "With a [service] source: the current month's troublesome "
    "customers (class A by service effort, revenue share below half their effort share) "
    "with their shares, tier, cost to serve, top activity kinds and the action; strategic "
    "customers are kept (never 'move away').",
    "tier_cost_to_serve": "Per month and tier: customers, revenue, margin, cost to serve, "
    "loaded margin, effort and the kinds of activity serving the tier goes into. "
    "Filter on tier and is_current.",
    "month_overview": "Per month and metric (1-month window): customers, VIP / good / regular "
    "counts, A / B / C counts, total value, top-20 % share, Gini and alerts.",
}

# Column descriptions by column name; "view.column" overrides a name for one relation.
COLUMN_DESCRIPTIONS = {
    "month": "The month (its first day) the row reports on.",
    "customer_id": "The customer's id in the payment source.",
    "metric": "Ranking criterion: revenue, payments, units or margin (pareto_summary also "
    "effort, with a [service] source). Filter on one.",
    "window_months": "Months summed, ending with month (1, 3, 6 or 12; tiers: 3).",
    "revenue": "Sum of payments net of refunds over the month or window.",
    "gross_revenue": "Sum of the positive payments of the month.",
    "refunds": "Refunded amount of the month (a positive number).",
    "payments": "Number of payments with a positive amount.",
    "units": "Units shipped (NULL when the source has no units).",
    "margin": "Revenue minus cost (NULL when the source has no cost).",
    "value": "The customer's value by the metric over the window.",
    "rank": "Rank by value, 1 = highest (ties by customer_id).",
    "share": "The customer's share of the total value.",
    "cum_share": "Share of the total value of this customer and all ranked before it.",
    "abc_class": "A = the customers bringing the first 80 % of value, B = next 15 %, C = rest.",
    "xyz_class": "Stability over 12 months: X steady, Y variable, Z erratic (window 12 only).",
    "segment": "vip (top 20 %), good (next 20 %, and VIPs who just dropped), regular.",
    "movement": "new_vip, kept_vip or dropped_vip versus the previous month; else NULL.",
    "months_as_vip": "Months the customer was VIP in the last 6 months.",
    "first_vip_month": "First month as VIP within the last 6 months.",
    "last_vip_month": "Last month as VIP within the last 6 months.",
    "is_vip_this_month": "True when the customer is VIP in this month.",
    "missed_by_period_method": "In the rolling roster but not VIP by the 3-month period "
    "method: a big one-month customer.",
    "change": "added (joined the rolling roster) or removed (left it).",
    "alert": "vip_stopped_paying, vip_dropped or margin_erosion.",
    "detail": "The alert in words (its numbers are columns of vip_call_list).",
    "margin_pct": "Margin / revenue (NULL when revenue <= 0).",
    "call_rank": "Order of the calls, 1 = call first, per month and metric (a total order): "
    "the smallest share of its recent value expected to be kept first; likely-back wobblers "
    "last.",
    "priority": "call (on this month's list) or watch (likely back, or past the caps of "
    "[call_list]).",
    "share_kept": "expected_value / recent_value: the share of its recent value the customer "
    "is expected to keep over the next 3 months (NULL without a recent value).",
    "p_alive": "Probability that the customer still buys (BG/NBD on its paying days of the "
    "last 12 months, as of the month's end).",
    "expected_payments": "Expected paying days over the next 3 months (BG/NBD).",
    "expected_value": "Expected value by the metric over the next 3 months: expected paying "
    "days x the customer's value per paying day.",
    "recent_value": "The customer's value by the metric over the 3 months before the month.",
    "value_at_risk": "What we expect to lose if nothing is done: recent_value minus "
    "expected_value (0 when more is expected).",
    "paying_days": "Days with a payment in the last 12 months.",
    "days_between": "Average days between paying days (NULL with one paying day).",
    "quiet_days": "Days from the last payment to the end of the month.",
    "vip_dips": "Earlier times the customer fell out of the monthly VIPs (last 6 months).",
    "vip_returns": "Earlier times the customer came back into the monthly VIPs (last 6 months).",
    "call_reason": "Why call (or why only watch), in one line.",
    "tier": "Profitability tier: 1 ideal, 2 good earner, 3 break-even, 4 money loser (on the "
    "loaded margin when there are service costs).",
    "tier_name": "The tier's name: ideal, good earner, break-even, money loser.",
    "n_customers": "Customers ranked (value > 0).",
    "total_value": "Sum of the ranked customers' values.",
    "top20_share": "Share of the total value brought by the top 20 % of customers.",
    "n_class_a": "Customers in class A.",
    "n_class_b": "Customers in class B.",
    "n_class_c": "Customers in class C.",
    "gini": "Gini coefficient of the values (0 equal, towards 1 concentrated).",
    "hhi": "Herfindahl index: sum of squared shares.",
    "top1_share": "Share of the total value of the first-ranked customer.",
    "metric_a": "First metric of the pair.",
    "metric_b": "Second metric of the pair.",
    "n_a": "VIPs by metric_a.",
    "n_b": "VIPs by metric_b.",
    "n_both": "Customers VIP by both metrics.",
    "jaccard": "n_both / customers VIP by either metric.",
    "name": "The customer's name (from the [customers] source; NULL when unknown).",
    "owner_email": "The account manager who owns the customer (from the [customers] source).",
    "attributes": "The [customers] source's other columns for the customer (JSON).",
    "run_id": "The pipeline run (an Airflow run or a CLI run).",
    "status": "loaded, provisional (loaded before the month had ended: partial figures) or failed.",
    "load_status": "loaded, or provisional: loaded before the month had ended (partial).",
    "rows_read": "Source rows read for the month.",
    "rows_duplicate": "Exact duplicate rows dropped.",
    "rows_rounded": "Rows whose floating-point amount or cost was read as its nearest cent.",
    "rows_quarantined": "Bad rows set aside (quarantine on).",
    "rows_loaded": "Rows loaded into the reporting tables (0 when failed).",
    "checks_passed": "Data checks passed.",
    "checks_failed": "Data checks failed.",
    "checks_warned": "Data checks that warned.",
    "check_results": "Every check's result (JSON).",
    "error": "Why the attempt failed (step: message).",
    "source_fingerprint": "Fingerprint of the month's source rows.",
    "started_at": "When the run started on the month.",
    "finished_at": "When the attempt finished.",
    "attempt": "1, 2, ... for attempts of the same run id and month (retries).",
    "recorded_at": "When the warehouse recorded the attempt.",
    "loaded_at": "When the load the month holds was recorded.",
    "last_attempt_status": "Status of the month's most recent attempt (loaded or failed).",
    "last_attempt_at": "When the month's most recent attempt was recorded.",
    "last_attempt_error": "Error of the most recent attempt if it failed (the month still "
    "holds the load of run_id).",
    "is_current": "True for the last loaded month.",
    "previous_abc_class": "ABC class in the previous month (NULL: not ranked then).",
    "migration": "new (not ranked last month), up, down or same class.",
    "previous_rank": "Rank in the previous month (NULL: not ranked then).",
    "previous_value": "Value in the previous month.",
    "previous_segment": "Segment in the previous month (NULL: did not pay then).",
    "current_rank": "Rank this month (NULL: did not pay this month).",
    "current_value": "Value this month (NULL: did not pay this month).",
    "current_segment": "Segment this month (NULL: did not pay this month).",
    "last_paid_month": "Last month up to this one with a payment.",
    "value_at_stake": "Previous month's value minus this month's (all of it when the "
    "customer stopped paying).",
    "reason": "dropped_vip, stopped_paying or removed_from_roster.",
    "n_vip": "VIP customers.",
    "n_good": "Good customers.",
    "n_regular": "Regular customers.",
    "n_alerts": "Alerts raised.",
    "version": "Migration number.",
    "description": "What the migration does.",
    "applied_at": "When the migration was applied.",
    "digest": "SHA-256 of the views' SQL and descriptions.",
    "created_at": "When the views were created.",
    "month_load.run_id": "The run whose data the month holds.",
    "month_load.attempt": "The attempt of that run whose data the month holds.",
    "current_month.month": "The last loaded month.",
    "activities": "Service activities of the customer in the month (tickets, visits, ...).",
    "hours": "Staff hours spent serving the customer (NULL when the source has no hours).",
    "cost_to_serve": "Cost of serving the customer: the sum of its activities' cost (NULL "
    "without a cost column; in customer_tier 0 where none, NULL without service costs).",
    "loaded_margin": "Margin minus cost to serve over the window (NULL without service "
    "costs); the tier is decided on it when present.",
    "loaded_margin_pct": "Loaded margin / revenue (NULL when revenue <= 0 or without service "
    "costs).",
    "effort": "Service effort over the window: hours when the source has hours, else the "
    "number of activities.",
    "revenue_share": "Revenue / total revenue of the customers with revenue > 0 (0 when the "
    "customer's revenue <= 0).",
    "effort_share": "Effort / total effort of the window (0 without effort).",
    "revenue_class": "ABC class when ranked by revenue over the window (NULL: revenue <= 0).",
    "effort_class": "ABC class when ranked by effort over the window (NULL: no effort).",
    "profile": "troublesome (class A by effort, revenue share below half its effort share), "
    "best (class A by revenue, effort share at most its revenue share) or good.",
    "strategic": "The customer is strategic (the [customers] source's strategic attribute): "
    "kept for what it brings beyond profit, served deliberately, never moved away from.",
    "n_strategic": "Strategic customers among them.",
    "top_kinds": "The kinds of activity that took the most effort (effort in brackets).",
    "action": "What the practice says: strategic: keep, serve deliberately; Tier 4: move "
    "away; Tier 3: take no more like them; else serve them for less.",
    "kind": "The kind of service activity as the source names it ('unspecified' without).",
    "kind_rank": "1 for the customer's kind of activity with the most effort, 2 next, ...",
    "customer_tier.revenue": "Revenue over the window.",
    "customer_tier.margin": "Margin over the window.",
}


def column_description(relation: str, column: str) -> str:
    """A column's description; a missing one is an error naming it."""
    text = COLUMN_DESCRIPTIONS.get(f"{relation}.{column}") or COLUMN_DESCRIPTIONS.get(column)
    if text is None:
        raise KeyError(
            f"{relation}.{column} has no description: add it to COLUMN_DESCRIPTIONS in "
            "pipeline/schema.py"
        )
    return text


def comment_statements(
    relations: dict[str, list[str]],
    kinds: dict[str, str] | None = None,
    qualify=lambda name: name,
    quote=lambda name: f'"{name}"',
) -> list[str]:
    """COMMENT ON statements for each relation ({name: columns}) and its columns.

    ``kinds`` says TABLE or VIEW per relation (default VIEW); relations without a
    description are an error (naming it).
    """
    statements = []
    for relation, columns in sorted(relations.items()):
        if relation not in DESCRIPTIONS:
            raise KeyError(
                f"{relation} has no description: add it to DESCRIPTIONS in pipeline/schema.py"
            )
        kind = (kinds or {}).get(relation, "VIEW")
        name = qualify(relation)
        statements.append(f"COMMENT ON {kind} {name} IS {_literal(DESCRIPTIONS[relation])}")
        for column in columns:
            text = _literal(column_description(relation, column))
            statements.append(f"COMMENT ON COLUMN {name}.{quote(column)} IS {text}")
    return statements


def description_digest() -> str:
    """A digest of every description (a change re-creates the comments)."""
    text = repr(sorted(DESCRIPTIONS.items())) + repr(sorted(COLUMN_DESCRIPTIONS.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
