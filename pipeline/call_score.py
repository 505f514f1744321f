"""The risk that an alerted customer is leaving: who to call first (README "The call list").

Two models, both fitted anew for each month on what the lake holds up to its end (months
M-11..M, never later; spec "Purity"); sql/call_features.sql gives them their rows:

1. A BG/NBD model of paying days (pymc-marketing's ``BetaGeoModel``, the maintained successor
   of ``lifetimes``), fitted by MAP (scipy's L-BFGS-B from the model's fixed start:
   deterministic) on at most ``[call_list] fit_customers`` customers of the history, the
   first by md5 of customer_id. Its cost is mostly fixed (pytensor builds the model's graph),
   so a larger sample buys little. It gives every scored customer P(alive) and the expected
   paying days over the horizon; times the customer's value per paying day, the expected
   value, and expected_value / recent_value, the share of its recent value it should keep.
2. A logistic regression (scikit-learn) that learns, from this business's own last months,
   which alerts turned out to be leaving: the examples are the VIPs that dropped out in
   M-5..M-3, whose 3 months after are known by M. Its inputs are the BG/NBD's share kept and
   P(alive), the fall since last month, the month against the customer's typical month, the
   silence against its rhythm, and whether it stopped paying. A business whose VIPs wobble
   (grocery) and one whose alerts are mostly real (a one-off retailer) weigh them
   differently; a fixed formula would suit one of them. With too few examples (fewer than
   MIN_EXAMPLES, or fewer than MIN_CLASS of either outcome) the risk is 1 - share kept.

customer_risk holds, per (metric, customer_id, alert) of the month's alerts: p_alive,
expected_payments, expected_value and risk (the probability of leaving).
"""

from __future__ import annotations

import logging
import warnings
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa

from pipeline.months import add_months
from pipeline.sql import run_sql

log = logging.getLogger(__name__)

DAYS_PER_MONTH = 365.25 / 12
MIN_EXAMPLES = 30
MIN_CLASS = 5
RISK_SCHEMA = pa.schema(
    [
        pa.field("metric", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("alert", pa.string()),
        pa.field("p_alive", pa.float64()),
        pa.field("expected_payments", pa.float64()),
        pa.field("expected_value", pa.float64()),
        pa.field("risk", pa.float64()),
    ]
)


def training_months(
    month: date, months_read: tuple[date, ...], vip_lists: tuple[date, ...], horizon: int
) -> list[date]:
    """The months whose dropped VIPs teach the risk model: their month before has a VIP list,
    their ``horizon`` months after end by ``month``, their ``horizon`` months before are
    read."""
    return [
        t
        for t in months_read
        if add_months(t, horizon) <= month
        and add_months(t, -1) in vip_lists
        and add_months(t, -horizon) >= months_read[0]
    ]


def score_alerted(
    con: duckdb.DuckDBPyConnection,
    payment_files: list[str],
    params: dict,
    fit_customers: int,
    training: list[date],
) -> None:
    """Create ``call_features`` and ``customer_risk`` on ``con``."""
    if payment_files:
        con.read_parquet(payment_files, hive_partitioning=False).create_view("lake_day_payments")
    else:
        con.execute(
            "create temp view lake_day_payments as select null::varchar as customer_id, "
            "null::timestamptz as paid_at, null::decimal(18, 2) as amount where false"
        )
    run_sql(
        con,
        "call_features",
        create="call_features",
        **params,
        fit_customers=fit_customers,
        training_months=training,
    )
    rows = con.sql(
        "select * from call_features where not in_fit_sample "
        "order by is_training, as_of, metric, customer_id, alert"
    ).to_arrow_table()
    targets = rows.filter(pa.compute.invert(rows["is_training"]))
    if targets.num_rows:
        fit = con.sql(
            "select customer_id, frequency, recency, age as T from call_features "
            "where in_fit_sample and paying_days > 0 order by customer_id"
        ).to_arrow_table()
        risk = _risk(fit, rows, round(params["horizon_months"] * DAYS_PER_MONTH))
    else:
        risk = RISK_SCHEMA.empty_table()
    con.register("customer_risk_rows", risk)
    con.execute("create table customer_risk as select * from customer_risk_rows")
    con.unregister("customer_risk_rows")


def _risk(fit: pa.Table, rows: pa.Table, horizon_days: int) -> pa.Table:
    frame = rows.to_pandas()
    p_alive, expected = _bg_nbd(fit, frame, horizon_days)
    expected_value = expected * np.clip(frame["value_per_paying_day"].astype(float), 0, None)
    recent = frame["recent_value"].astype(float).to_numpy()
    kept = np.where(recent > 0, expected_value / np.where(recent > 0, recent, 1), 3.0)
    features = _features(frame, p_alive, kept)
    is_training = frame["is_training"].to_numpy(bool)
    risk = 1 - np.clip(kept, 0, 1)
    learned = frame["leaving"].to_numpy(bool)[is_training]
    if is_training.sum() >= MIN_EXAMPLES and min(learned.sum(), (~learned).sum()) >= MIN_CLASS:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        model.fit(features[is_training], learned)
        risk = model.predict_proba(features)[:, 1]
    target = ~is_training
    return pa.table(
        {
            "metric": pa.array(frame["metric"][target], pa.string()),
            "customer_id": pa.array(frame["customer_id"][target], pa.string()),
            "alert": pa.array(frame["alert"][target], pa.string()),
            # rounded: the last bits of an optimiser's result are no fact worth other bytes
            "p_alive": pa.array(np.round(p_alive[target], 6), pa.float64()),
            "expected_payments": pa.array(np.round(expected[target], 4), pa.float64()),
            "expected_value": pa.array(np.round(expected_value[target], 2), pa.float64()),
            "risk": pa.array(np.round(risk[target], 6), pa.float64()),
        },
        schema=RISK_SCHEMA,
    )


def _features(frame, p_alive: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The risk model's inputs, each bounded so that one extreme customer cannot dominate."""
    now = frame["value_now"].astype(float).to_numpy()
    last = frame["value_last_month"].astype(float).to_numpy()
    typical = frame["typical_value"].astype(float).to_numpy()
    frequency = frame["frequency"].to_numpy(float)
    rhythm = np.where(
        frequency > 0, frame["recency"].to_numpy(float) / np.maximum(frequency, 1), DAYS_PER_MONTH
    )
    quiet = frame["quiet_days"].fillna(frame["age"]).to_numpy(float)
    return np.column_stack(
        [
            np.clip(kept, 0, 3),
            p_alive,
            np.clip(np.where(last > 0, now / np.where(last > 0, last, 1), 1.0), 0, 2),
            np.clip(np.where(typical > 0, now / np.where(typical > 0, typical, 1), 1.0), 0, 3),
            np.clip(np.log1p(quiet / np.maximum(rhythm, 1)), 0, 5),
            (now <= 0).astype(float),
        ]
    )


def _bg_nbd(fit: pa.Table, frame, horizon_days: int) -> tuple[np.ndarray, np.ndarray]:
    """P(alive) and expected paying days over ``horizon_days`` of each row of ``frame`` (its
    frequency, recency and age as of its month), from a BG/NBD model fitted on ``fit``."""
    import pandas as pd

    with warnings.catch_warnings():
        # pymc, arviz and pytensor announce API changes on import and on every fit
        warnings.simplefilter("ignore")
        from pymc_marketing.clv import BetaGeoModel

        for name in ("pymc", "pytensor", "pymc_marketing"):
            logging.getLogger(name).setLevel(logging.ERROR)
        model = BetaGeoModel(data=fit.to_pandas())
        model.fit(method="map", progressbar=False)
        # one row per (as of, metric, customer): the model wants unique ids
        data = pd.DataFrame(
            {
                "customer_id": np.arange(len(frame)),
                "frequency": frame["frequency"].to_numpy(float),
                "recency": frame["recency"].to_numpy(float),
                "T": frame["age"].to_numpy(float),
            }
        )
        ids = {"customer_id": data["customer_id"].to_numpy()}
        p_alive = model.expected_probability_alive(data).mean(("chain", "draw")).sel(ids)
        expected = (
            model.expected_purchases(data, future_t=horizon_days).mean(("chain", "draw")).sel(ids)
        )
    return p_alive.to_numpy(), expected.to_numpy()
