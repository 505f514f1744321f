"""The risk that an alerted customer is leaving: who to call first (README "The call list").

A BG/NBD model of paying days (pymc-marketing's ``BetaGeoModel``, the maintained successor of
``lifetimes``) is fitted anew for each month on what the lake holds up to its end (months
M-11..M, never later; spec "Purity"; sql/call_features.sql gives it its rows), by MAP
(scipy's L-BFGS-B from the model's fixed start: deterministic), on at most
``[call_list] fit_customers`` customers of the history, the first by md5 of customer_id. Its
cost is mostly fixed (pytensor builds the model's graph), so a larger sample buys little.

For every alerted customer it gives P(alive) and the expected paying days over the horizon;
times the customer's value per paying day, the expected value; and expected_value over the
customer's value of the months before (recent_value), the **share kept**: the part of what
the customer brought lately that it is expected to bring next. The call order puts the
smallest share kept first: one quiet month after a year of weekly payments leaves little
(P(alive) falls), the same month for a customer who pays twice a year leaves most, and a
customer whose last months were a spike is expected to fall back.

Measured against a learned order (issue 20): a logistic regression learning, from the
business's own VIPs that dropped out 3-5 months before, how to weigh the share kept with the
fall since last month, the silence against the customer's rhythm and P(alive) did no better
on CDNOW (1.15-1.18x against 1.17x) and worse on the generator (1.50-1.91x against 2.03x):
three months of examples are too few to weigh five inputs. So the order is the model's own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings

import duckdb
import numpy as np
import pyarrow as pa

from pipeline.sql import run_sql

log = logging.getLogger(__name__)

DAYS_PER_MONTH = 365.25 / 12
RISK_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("p_alive", pa.float64()),
        pa.field("expected_payments", pa.float64()),
    ]
)


def score_alerted(
    con: duckdb.DuckDBPyConnection, payment_files: list[str], params: dict, fit_customers: int
) -> None:
    """Create ``call_features`` (sql/call_features.sql) and ``customer_risk`` (P(alive) and
    expected paying days of each alerted customer) on ``con``."""
    if payment_files:
        con.read_parquet(payment_files, hive_partitioning=False).create_view("lake_day_payments")
    else:
        con.execute(
            "create temp view lake_day_payments as select null::varchar as customer_id, "
            "null::timestamptz as paid_at, null::decimal(18, 2) as amount where false"
        )
    run_sql(con, "call_features", create="call_features", **params, fit_customers=fit_customers)
    alerted = con.sql(
        "select distinct customer_id, frequency, recency, age as T from call_features "
        "where not in_fit_sample order by customer_id"
    ).to_arrow_table()
    if alerted.num_rows:
        fit = con.sql(
            "select customer_id, frequency, recency, age as T from call_features "
            "where in_fit_sample and paying_days > 0 order by customer_id"
        ).to_arrow_table()
        risk = _bg_nbd(fit, alerted, round(params["horizon_months"] * DAYS_PER_MONTH))
    else:
        risk = RISK_SCHEMA.empty_table()
    con.register("customer_risk_rows", risk)
    con.execute("create table customer_risk as select * from customer_risk_rows")
    con.unregister("customer_risk_rows")


# the model's libraries announce API changes on import and on every fit: not for our logs
_QUIET = r"(arviz|pymc|pymc_marketing|pytensor|xarray)(\.|$)"


def import_model():
    """pymc-marketing's BG/NBD model class (pymc, pytensor: seconds to import)."""
    for category in (FutureWarning, UserWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=_QUIET)
    for name in ("pymc", "pytensor", "pymc_marketing"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from pymc_marketing.clv import BetaGeoModel

    return BetaGeoModel


def warm_up() -> None:
    """Import the model in a background thread, so that its seconds of importing overlap
    with the month's extract and gates (DuckDB releases the GIL) instead of delaying the
    computation, which waits for it (Python's import lock); a failure shows there."""

    def load() -> None:
        with contextlib.suppress(Exception):
            import_model()

    threading.Thread(target=load, name="model-import", daemon=True).start()


def _bg_nbd(fit: pa.Table, alerted: pa.Table, horizon_days: int) -> pa.Table:
    """P(alive) and expected paying days over ``horizon_days`` of the ``alerted`` customers,
    from a BG/NBD model fitted on ``fit`` (both: customer_id, frequency, recency, T)."""
    model_class = import_model()
    with warnings.catch_warnings():
        # and on every fit, from modules of their own or of numpy
        warnings.simplefilter("ignore")
        model = model_class(data=fit.to_pandas())
        model.fit(method="map", progressbar=False)
        data = alerted.to_pandas()
        ids = {"customer_id": data["customer_id"].to_numpy()}
        p_alive = model.expected_probability_alive(data).mean(("chain", "draw")).sel(ids)
        expected = (
            model.expected_purchases(data, future_t=horizon_days).mean(("chain", "draw")).sel(ids)
        )
    # rounded: the last bits of an optimiser's result are no fact worth other bytes
    return pa.table(
        {
            "customer_id": alerted["customer_id"],
            "p_alive": pa.array(np.round(p_alive.to_numpy(), 6), pa.float64()),
            "expected_payments": pa.array(np.round(expected.to_numpy(), 4), pa.float64()),
        },
        schema=RISK_SCHEMA,
    )
