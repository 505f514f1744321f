"""The report's charts: Vega-Lite specifications made with Altair (imported when drawn),
and the Vega JavaScript bundle the page inlines to draw them (from vl-convert)."""

from __future__ import annotations

from pipeline.deliver.backtest import TOP
from pipeline.deliver.report_data import CLASSES, ReportData
from pipeline.months import format_month
from pipeline.schema.inputs import ALL_METRICS


def service_charts(data: ReportData) -> dict:
    """The charts of "Cost to serve": the effort Pareto curve beside the profit curve, and
    the whale curve on the loaded margin; none without a [service] source."""
    import altair as alt

    if data.service is None:
        return {}
    service, charts = data.service, {}
    curves = [p | {"curve": "service effort"} for p in service["effort_curve"]]
    curves += [p | {"curve": "profit (margin)"} for p in service["profit_curve"]]
    if curves:
        charts["effort"] = _spec(
            alt.Chart(alt.Data(values=curves))
            .mark_line()
            .encode(
                x=alt.X(
                    "customers:Q",
                    title="share of customers (ranked by each)",
                    axis=alt.Axis(format="%"),
                ),
                y=alt.Y(
                    "share:Q",
                    title="cumulative share",
                    axis=alt.Axis(format="%"),
                    scale=alt.Scale(domain=[0, 1]),
                ),
                color=alt.Color(
                    "curve:N",
                    title=None,
                    scale=alt.Scale(
                        domain=["service effort", "profit (margin)"], range=["#c0392b", "#1f5fa8"]
                    ),
                ),
                tooltip=[
                    "curve:N",
                    alt.Tooltip("customers:Q", format=".1%"),
                    alt.Tooltip("share:Q", format=".1%"),
                ],
            ),
            520,
            300,
        )
    if service["loaded_whale"]:
        line = (
            alt.Chart(alt.Data(values=service["loaded_whale"]))
            .mark_line(color="#c0392b")
            .encode(
                x=alt.X(
                    "customers:Q",
                    title="share of customers (ranked by loaded margin)",
                    axis=alt.Axis(format="%"),
                ),
                y=alt.Y(
                    "profit:Q",
                    title=f"cumulative loaded margin ({data.currency})",
                    axis=alt.Axis(format=",.0f"),
                ),
                tooltip=[
                    alt.Tooltip("customers:Q", format=".1%"),
                    alt.Tooltip("profit:Q", format=",.2f"),
                ],
            )
        )
        rule = (
            alt.Chart(alt.Data(values=[{"y": 0.0}]))
            .mark_rule(strokeDash=[4, 4], color="#888")
            .encode(y="y:Q")
        )
        charts["loaded_whale"] = _spec(alt.layer(line, rule), 520, 280)
    return charts


def list_quality_chart(data: ReportData) -> dict:
    """Per judged month: the share of leaving customers among all alerts, the first 20 by
    value at stake and the first 20 by call_rank."""
    import altair as alt

    groups = (
        ("leaving_all", "all alerts"),
        ("leaving_top_stake", f"first {TOP} by value at stake"),
        ("leaving_top_call", f"first {TOP} by call_rank"),
    )
    values = [
        {"month": format_month(r["month"]), "list": label, "share": r[key]}
        for r in data.list_quality
        if r["month"] is not None
        for key, label in groups
        if r[key] is not None
    ]
    return _spec(
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("month:N", title="month of the list", axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("list:N", sort=[label for _, label in groups]),
            y=alt.Y(
                "share:Q",
                title="leaving 3 months later",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "list:N",
                sort=[label for _, label in groups],
                scale=alt.Scale(range=["#b0b0b0", "#f0a500", "#1f5fa8"]),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            tooltip=["month:N", "list:N", alt.Tooltip("share:Q", format=".0%")],
        ),
        420,
        220,
    )


def pareto_chart(data: ReportData) -> dict:
    import altair as alt

    curves = [
        {"window": f"{window} mo", "customers": customers, "cum_share": share}
        for window, pareto in sorted(data.pareto.items())
        for customers, share in pareto.curve
    ]
    bands = [
        {"band": "A", "low": 0.0, "high": data.a_share},
        {"band": "B", "low": data.a_share, "high": data.b_share},
        {"band": "C", "low": data.b_share, "high": 1.0},
    ]
    band_layer = (
        alt.Chart(alt.Data(values=bands))
        .mark_rect(opacity=0.12)
        .encode(
            y=alt.Y("low:Q"),
            y2="high:Q",
            color=alt.Color(
                "band:N",
                scale=alt.Scale(domain=list(CLASSES), range=["#2f7d32", "#f0a500", "#b0b0b0"]),
                legend=alt.Legend(title="class band"),
            ),
        )
    )
    lines = (
        alt.Chart(alt.Data(values=curves))
        .mark_line()
        .encode(
            x=alt.X(
                "customers:Q",
                title="share of customers (ranked by value)",
                axis=alt.Axis(format="%"),
            ),
            y=alt.Y(
                "cum_share:Q",
                title=f"cumulative share of {data.metric}",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "window:N",
                title="window",
                sort=[f"{w} mo" for w in sorted(data.pareto)],
                scale=alt.Scale(scheme="darkmulti"),
            ),
            tooltip=[
                "window:N",
                alt.Tooltip("customers:Q", format=".1%"),
                alt.Tooltip("cum_share:Q", format=".1%"),
            ],
        )
    )
    return _spec(alt.layer(band_layer, lines).resolve_scale(color="independent"), 520, 320)


def whale_chart(data: ReportData) -> dict:
    import altair as alt

    line = (
        alt.Chart(alt.Data(values=data.whale))
        .mark_line(color="#1f5fa8")
        .encode(
            x=alt.X(
                "customers:Q",
                title="share of customers (ranked by profit)",
                axis=alt.Axis(format="%"),
            ),
            y=alt.Y(
                "profit:Q", title="cumulative share of total profit", axis=alt.Axis(format="%")
            ),
            tooltip=[
                alt.Tooltip("customers:Q", format=".1%"),
                alt.Tooltip("profit:Q", format=".1%"),
            ],
        )
    )
    rule = (
        alt.Chart(alt.Data(values=[{"y": 1.0}]))
        .mark_rule(strokeDash=[4, 4], color="#888")
        .encode(y="y:Q")
    )
    return _spec(alt.layer(line, rule), 520, 280)


def tier_chart(data: ReportData) -> dict:
    import altair as alt

    values = [
        {"tier": f"Tier {t['tier']}", "measure": measure, "amount": float(t[measure])}
        for t in data.tiers
        for measure in ("revenue", "margin")
    ]
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("tier:N", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset="measure:N",
            y=alt.Y("amount:Q", title=data.currency),
            color=alt.Color("measure:N", scale=alt.Scale(range=["#1f5fa8", "#2f7d32"])),
            tooltip=["tier:N", "measure:N", alt.Tooltip("amount:Q", format=",.2f")],
        )
    )
    return _spec(chart, 360, 240)


def overlap_chart(data: ReportData) -> dict:
    import altair as alt

    values = [
        {"a": r["metric_a"], "b": r["metric_b"], "jaccard": r["jaccard"]}
        for r in data.overlap
        if r["jaccard"] is not None
    ]
    base = alt.Chart(alt.Data(values=values)).encode(
        x=alt.X("a:N", sort=list(ALL_METRICS), title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("b:N", sort=list(ALL_METRICS), title=None),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("jaccard:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"))
    )
    text = base.mark_text(fontSize=13).encode(text=alt.Text("jaccard:Q", format=".2f"))
    return _spec(alt.layer(heat, text), 260, 200)


def _spec(chart, width: int, height: int) -> dict:
    spec = chart.properties(width=width, height=height).to_dict()
    spec.pop("$schema", None)  # nothing in the page points at the network
    return spec


_VEGA_BUNDLE: list[str] = []  # made once per process (seconds: vl-convert bundles it)


def vega_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script, for the Vega-Lite version Altair
    writes (it exposes ``vegaEmbed`` on ``window``)."""
    if not _VEGA_BUNDLE:
        import altair as alt
        import vl_convert as vlc

        version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
        bundle = vlc.javascript_bundle(vl_version=version)
        _VEGA_BUNDLE.append(bundle.replace("</script", "<\\/script"))
    return _VEGA_BUNDLE[0]


def set_vega_bundle(bundle: str) -> None:
    """Use ``bundle`` (``vega_bundle()`` of another process of this installation): the
    Airflow scheduler gets it from a child process (``pipeline.run.preload``)."""
    _VEGA_BUNDLE[:] = [bundle]
