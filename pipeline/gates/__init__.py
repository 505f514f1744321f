"""Quality gates: Great Expectations suites, defined in code, that stop a bad month.

Four gates run in a month's pipeline (``pipeline.run.steps``):

* ``raw``: the month's lake partition (schema, required values, paid_at inside the
  month, currency, signs, row count and exact amount sum against the manifest);
* ``customer_month``: customer_month against the lake partition (one row per customer,
  exact revenue reconciliation, gross_revenue - refunds = revenue);
* ``outputs``: the other reporting tables (shares, enumerations, cum_share order, the
  VIP count, segments partitioning the population, the roster window);
* ``before_load``: the rows about to be loaded (counts as computed, unique keys).

Every check is one GX expectation with a stable name (``raw.payment_id_unique``) and a
severity from ``[checks.severity]`` ("error" unless configured "warning"). GX validates
pandas DataFrames (it cannot validate DuckDB through SQLAlchemy): per-row rules run as
column expectations on the data itself, in batches of ``checks.batch_rows`` rows, and
each of them holds for a table exactly when it holds for every batch. GX first validates
the few rows that decide them (each column's min, max, first NULL and NaN, and enough of
its distinct values; ``engine._deciding_rows``), and every row only when one of those
fails, for exact counts and examples: a clean million-row month costs milliseconds, not seconds.
Rules across rows (uniqueness, reconciliations, orderings, counts per group) are "rows
that break the rule" queries in ``sql/checks/``, computed by DuckDB over the Parquet files
or the Arrow tables; GX then expects their check table to be empty. Money never reaches GX as a
number to compare: exact sums are decided in DuckDB, and decimal columns are handed to
GX as float only for sign and range checks, which that conversion cannot change.

Each gate writes GX's validation results as JSON and a readable HTML page into
``<out_dir>/gates/``. GX takes seconds to import, so it is imported on first use (or in
the background by ``warm_up()``), once per process, never when this package is imported.

The modules, from the bottom up: ``results`` (CheckResult, GateReport), ``rules`` (the
rule vocabulary), ``report`` (a gate's JSON and HTML files), ``data`` (batches, views and
check tables for GX), ``engine`` (running GX), then the gates: ``raw`` (raw,
raw_activities) and ``outputs`` (customer_month, outputs, before_load).
"""

from pipeline.gates.engine import preload_gx, warm_up
from pipeline.gates.outputs import gate_before_load, gate_customer_month, gate_outputs
from pipeline.gates.raw import gate_raw, gate_raw_activities
from pipeline.gates.results import CheckResult, GateReport, raise_if_failed

__all__ = [
    "CheckResult",
    "GateReport",
    "gate_before_load",
    "gate_customer_month",
    "gate_outputs",
    "gate_raw",
    "gate_raw_activities",
    "preload_gx",
    "raise_if_failed",
    "warm_up",
]
