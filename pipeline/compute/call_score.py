"""The risk that an alerted customer is leaving: who to call first (README "The call list").

A BG/NBD model of paying days (pymc-marketing's ``BetaGeoModel``, the maintained successor of
``lifetimes``) is fitted anew for each month on what the lake holds up to its end (months
M-11..M, never later; spec "Purity"; sql/call_features.sql gives it its rows), by MAP
(scipy's L-BFGS-B from the model's fixed start: deterministic), on at most
``[call_list] fit_customers`` customers of the history, the first by md5 of customer_id. Its
cost is mostly fixed (pytensor rewrites the model's graph, about 2 s), so a larger sample buys
little.

pytensor compiles the model to C code specialised on the shape of its data, and caches it on
disk: a fit on a number of customers it has not seen compiles for 5-15 s. So the sample always
has exactly ``fit_customers`` rows: a business with fewer customers is padded with customers
that bought nothing in no time (frequency = recency = T = 0), whose likelihood is exactly 1
(their log-likelihood and its gradient are 0), so that the fit is the same and one compiled
model serves every month of every business on the machine. And each process reads the keys of
every module in that cache before its first fit: in pytensor's default folder, shared with
whatever else runs pytensor there, that took 1.9 s with 178 modules. So the model has a folder
of its own (``MODEL_CACHE``, 36 modules; ``PYTENSOR_FLAGS`` naming a compiledir wins).

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
import os
import threading
import warnings
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.sql import run_sql

DAYS_PER_MONTH = 365.25 / 12
MODEL_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "customer-tiers" / "pytensor"
)
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
            "null::timestamptz as paid_at, null::money as amount where false"
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
        horizon_days = round(params["horizon_months"] * DAYS_PER_MONTH)
        risk = _predict(_fitted(_padded(fit, fit_customers)), alerted, horizon_days)
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
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "compiledir" not in flags:  # read once, when pytensor is first imported
        os.environ["PYTENSOR_FLAGS"] = ",".join(
            filter(None, [flags, f"base_compiledir={MODEL_CACHE}"])
        )
    from pymc_marketing.clv import BetaGeoModel

    return BetaGeoModel


def warm_up(after: threading.Thread | None = None) -> None:
    """Import the model in a background thread, so that its seconds of importing overlap
    with the month's extract, gates and SQL (DuckDB releases the GIL) instead of delaying
    the fit at the end of the computation, which waits for it (Python's import lock); a
    failure shows there. ``after``: a thread to let finish first (the gates' import, which
    the raw gate needs sooner; two imports at once hold the GIL in turns and both finish
    late)."""

    def load() -> None:
        if after is not None:
            after.join()
        with contextlib.suppress(Exception):
            import_model()

    threading.Thread(target=load, name="model-import", daemon=True).start()


def _padded(fit: pa.Table, rows: int) -> pa.Table:
    """``fit`` with customers who bought nothing in no time added up to ``rows`` rows: they
    add nothing to the likelihood, and the compiled model keeps its shape (module docstring)."""
    missing = rows - fit.num_rows
    if missing <= 0:
        return fit
    last_id = pc.max(fit["customer_id"]).as_py() or ""
    padding = pa.table(
        {
            # after the largest id, so unique, as the model requires
            "customer_id": [f"{last_id}~padding-{i:07d}" for i in range(missing)],
            "frequency": pa.repeat(pa.scalar(0, fit.schema.field("frequency").type), missing),
            "recency": pa.repeat(pa.scalar(0, fit.schema.field("recency").type), missing),
            "T": pa.repeat(pa.scalar(0, fit.schema.field("T").type), missing),
        },
        schema=fit.schema,
    )
    return pa.concat_tables([fit, padding])


def _fitted(fit: pa.Table):
    """A BG/NBD model fitted on ``fit`` (customer_id, frequency, recency, T)."""
    model_class = import_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # on every fit, from modules of their own or of numpy
        model = model_class(data=fit.to_pandas())
        model.fit(method="map", progressbar=False)
    return model


def _predict(model, alerted: pa.Table, horizon_days: int) -> pa.Table:
    """P(alive) and expected paying days over ``horizon_days`` of the ``alerted`` customers
    (customer_id, frequency, recency, T) from a fitted BG/NBD ``model``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in _fitted
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
