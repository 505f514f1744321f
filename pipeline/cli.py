"""The `tiers` command line: the pipeline without Airflow, on one laptop."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_errors import fail, fail_with, known_errors, run_app
from pipeline.cli_output import backtest_table, console, progress, summary
from pipeline.config import Config, load_config
from pipeline.errors import BackfillInterrupted, ConfigError
from pipeline.months import format_month, months_between, parse_month

app = typer.Typer(
    help="Customer segmentation from raw payments: extract, compute, check and load by month.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The pipeline's TOML configuration file.")
]
JOBS_HELP = (
    "Months computed in parallel processes. 1 is fastest on 2 cores (DuckDB already uses "
    "both); raise it on bigger machines."
)
ProvisionalOption = Annotated[
    bool,
    typer.Option(
        "--provisional",
        help="Allow a month that has not ended yet (partial figures, marked provisional).",
    ),
]
MonthOption = Annotated[str, typer.Option("--month", "-m", help="The business month, YYYY-MM.")]


def _month(text: str, option: str = "--month") -> date:
    try:
        return parse_month(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


def _load(path: Path, *months: date) -> Config:
    """The configuration; exit 2 when it cannot be read, or when a month given on the
    command line lies before its history_start (nothing is read or written then)."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        fail(str(exc), code=2)
    for month in months:
        if refused := cfg.business.before_start(month):
            fail(refused, code=2)
    return cfg


@app.command()
def extract(
    config: ConfigOption,
    month: MonthOption,
    quarantine: Annotated[
        bool | None,
        typer.Option(
            "--quarantine/--no-quarantine", help="Set bad rows aside instead of stopping."
        ),
    ] = None,
    provisional: ProvisionalOption = False,
) -> None:
    """Extract one month of payments (and of service activities, with [service]) into the
    lake."""
    from pipeline.faults import storage_fault
    from pipeline.lake.extract import extract as extract_month
    from pipeline.lake.partition import partition_dir

    the_month = _month(month)
    cfg = _load(config, the_month)
    try:
        manifest = extract_month(cfg, the_month, quarantine=quarantine, provisional=provisional)
    except known_errors() as exc:
        fail_with(exc)
    except Exception as exc:  # a full or read-only lake (OSError, DuckDB's IOException)
        fault = storage_fault(exc, cfg, partition_dir(cfg.lake.root, the_month))
        if fault is None:
            raise
        fault.__cause__ = exc
        fail_with(fault)
    console.print(
        f"{manifest.month}: {manifest.rows_read} row(s) read, {manifest.rows_duplicate} "
        f"duplicate(s) dropped, {manifest.rows_rounded} float(s) rounded to the cent, "
        f"{manifest.rows_quarantined + manifest.rows_undated} quarantined, "
        f"{manifest.rows_written} written (amount {manifest.amount_sum} {cfg.business.currency})"
    )
    if cfg.service is not None:  # the service activities of the month too
        from pipeline.lake.partition import ACTIVITIES

        try:
            activities = extract_month(
                cfg, the_month, quarantine=quarantine, provisional=provisional, dataset=ACTIVITIES
            )
        except known_errors() as exc:
            fail_with(exc)
        except Exception as exc:
            fault = storage_fault(exc, cfg, partition_dir(cfg.lake.root, the_month, ACTIVITIES))
            if fault is None:
                raise
            fault.__cause__ = exc
            fail_with(fault)
        console.print(
            f"{activities.month}: {activities.rows_read} activit(y/ies) read, "
            f"{activities.rows_duplicate} duplicate(s) dropped, "
            f"{activities.rows_quarantined + activities.rows_undated} quarantined, "
            f"{activities.rows_written} written (cost to serve {activities.amount_sum} "
            f"{cfg.business.currency})"
        )


@app.command()
def run(
    config: ConfigOption,
    month: MonthOption,
    cascade: Annotated[
        bool, typer.Option(help="Also recompute the later months that read this one.")
    ] = False,
    do_extract: Annotated[
        bool, typer.Option("--extract/--no-extract", help="Re-extract the month first.")
    ] = True,
    provisional: ProvisionalOption = False,
) -> None:
    """Run one month: extract, check, compute, check, load."""
    from pipeline.run import backfill as months

    first = _month(month)
    cfg = _load(config, first)
    try:
        results = [months.run_month(cfg, first, extract=do_extract, provisional=provisional)]
        console.print(f"{format_month(first)}: loaded")
        if cascade:
            later = months.cascade_months(cfg, first)
            if later:
                results += progress(
                    months_between(later[0], later[-1]),
                    lambda advance: months.cascade(cfg, later, on_month=advance),
                )
    except known_errors() as exc:
        fail_with(exc)
    summary(cfg, results)
    if any(r.status != "loaded" for r in results):
        raise typer.Exit(1)


@app.command()
def backfill(
    config: ConfigOption,
    first: Annotated[str, typer.Option("--from", help="First month, YYYY-MM.")],
    last: Annotated[str, typer.Option("--to", help="Last month, YYYY-MM (included).")],
    jobs: Annotated[int, typer.Option(min=1, help=JOBS_HELP)] = 1,
    do_extract: Annotated[
        bool, typer.Option("--extract/--no-extract", help="Extract each month first.")
    ] = True,
) -> None:
    """Run every month from --from to --to; loads are serialized, computing is parallel."""
    first_month, last_month = _month(first, "--from"), _month(last, "--to")
    cfg = _load(config, first_month)
    try:
        results = _backfill(cfg, first_month, last_month, jobs=jobs, extract=do_extract)
    except known_errors() as exc:
        fail_with(exc)
    except BackfillInterrupted as exc:
        fail(str(exc), code=128 + 15)
    summary(cfg, results)
    if any(r.status != "loaded" for r in results):
        raise typer.Exit(1)


def _backfill(cfg: Config, first: date, last: date, *, jobs: int, extract: bool) -> list:
    from pipeline.run import backfill as months

    return progress(
        months_between(first, last),
        lambda advance: months.backfill(
            cfg, first, last, jobs=jobs, extract=extract, on_month=advance
        ),
    )


@app.command()
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Working folder for the demo.")] = Path(
        "demo"
    ),
    customers: Annotated[int, typer.Option(min=10, help="Number of customers.")] = 3000,
    jobs: Annotated[int, typer.Option(min=1, help=JOBS_HELP)] = 1,
    seed: Annotated[int, typer.Option(help="Random seed of the sample.")] = 20261123,
) -> None:
    """Create a realistic sample (24 months) and run the whole pipeline on it."""
    from pipeline import demo as sample
    from pipeline.deliver.charts import write_charts
    from pipeline.deliver.report import write_report
    from pipeline.warehouse import open_warehouse

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    spec = sample.DemoSpec(customers=customers, seed=seed)
    rows = sample.write_payments(folder / "payments.csv", spec)
    activities = sample.write_activities(folder / "activities.csv", spec)
    sample.write_customers(folder / "customers.csv", spec)
    config_path = sample.write_config(folder, spec)
    console.print(
        f"sample: {rows:,} payment rows of {customers:,} customers -> {folder}/payments.csv"
    )
    console.print(
        f"        {activities:,} service activities -> {folder}/activities.csv; names, "
        f"account owners and three strategic customers -> {folder}/customers.csv"
    )
    cfg = _load(config_path)
    results = _backfill(cfg, spec.first_month, spec.last_month, jobs=jobs, extract=True)
    loaded = [r.month for r in results if r.status == "loaded"]
    summary(cfg, results)
    warehouse = open_warehouse(cfg)
    try:
        charts = write_charts(warehouse, folder / "charts", spec.last_month)
    finally:
        warehouse.close()
    report, *_ = write_report(cfg, spec.last_month) if spec.last_month in loaded else (None,)
    console.print(f"\nconfig:    {config_path}")
    console.print(f"lake:      {cfg.lake.root}")
    console.print(f"warehouse: {cfg.warehouse.url}")
    console.print(f"runs:      {cfg.runs.root}  (gate reports, pipeline_run records)")
    console.print("charts:    " + ", ".join(str(c) for c in charts))
    if report:
        console.print(f"report:    {report}  (open it in a browser)")
    console.print(f"done in {time.perf_counter() - started:.1f} s")
    if len(loaded) != len(results):
        raise typer.Exit(1)


warehouse_app = typer.Typer(help="Warehouse administration.", no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")


@warehouse_app.command("init")
def warehouse_init(config: ConfigOption) -> None:
    """Create or migrate the warehouse's tables and BI views (and publish the DuckDB
    catalog again, e.g. after moving the warehouse)."""
    from pipeline.warehouse import open_warehouse

    cfg = _load(config)
    warehouse = open_warehouse(cfg)
    try:
        warehouse.ensure_schema()
    except known_errors() as exc:
        fail_with(exc)
    finally:
        warehouse.close()
    console.print("warehouse schema is up to date")


@warehouse_app.command("grant-reader")
def grant_reader(
    config: ConfigOption,
    role: Annotated[str, typer.Option(help="The role BI tools log in with.")] = "bi_reader",
    password: Annotated[
        str | None,
        typer.Option(envvar="TIERS_BI_PASSWORD", help="Its password (or TIERS_BI_PASSWORD)."),
    ] = None,
) -> None:
    """Create a read-only login role for BI tools (PostgreSQL warehouse only)."""
    cfg = _load(config)
    if not cfg.warehouse.url.startswith(("postgresql://", "postgres://")):
        fail("grant-reader needs a PostgreSQL warehouse (warehouse.url = postgresql://...)")
    from pipeline.warehouse.postgres_roles import create_readonly_role

    try:
        create_readonly_role(cfg.warehouse.url, cfg.warehouse.schema_name, role, password)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"role {role!r} can read schema {cfg.warehouse.schema_name!r} and nothing more")


MetricOption = Annotated[
    str | None,
    typer.Option(
        "--metric", help="revenue, payments, units or margin (default: the first configured)."
    ),
]


@app.command()
def report(
    config: ConfigOption,
    month: MonthOption,
    metric: MetricOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the page (default <runs.root>/reports/YYYY-MM-<metric>.html)."
        ),
    ] = None,
) -> None:
    """Draw a loaded month's report: one self-contained HTML page from the warehouse."""
    from pipeline.deliver.report import write_report
    from pipeline.run.state import record_report

    the_month, cfg = _month(month), _load(config)
    try:
        path, chosen, run_id = write_report(cfg, the_month, output, metric=metric)
    except known_errors() as exc:
        fail_with(exc)
    record_report(cfg, the_month, chosen, path, run_id)
    console.print(f"{format_month(the_month)}: report by {chosen} -> {path}")


@app.command()
def backtest(
    config: ConfigOption,
    first: Annotated[str, typer.Option("--from", help="First month, YYYY-MM.")],
    last: Annotated[str, typer.Option("--to", help="Last month, YYYY-MM (included).")],
    metric: Annotated[str, typer.Option(help="revenue, payments, units or margin.")] = "revenue",
    top: Annotated[int, typer.Option(min=1, help="The size of the list judged.")] = 20,
) -> None:
    """Replay the call lists of loaded months: the share of leaving customers (value over the
    3 months after below half of the 3 months before) among all alerts, the first --top by
    value at stake and the first --top by call_rank, and the value that left with them."""
    from pipeline.deliver.backtest import backtest as replay

    first_month, last_month = _month(first, "--from"), _month(last, "--to")
    cfg = _load(config)
    try:
        rows = replay(cfg, first_month, last_month, metric, top).to_pylist()
    except known_errors() as exc:
        fail_with(exc)
    judged = [r for r in rows if r["month"] is not None]
    if not judged:
        fail(
            f"no month of {format_month(first_month)}..{format_month(last_month)} has its "
            "call list and the 3 months after it loaded: load later months, or pick earlier ones"
        )
    console.print(backtest_table(rows, metric, top))
    overall = rows[-1]
    if overall["leaving_top_stake"]:
        ratio = overall["leaving_top_call"] / overall["leaving_top_stake"]
        console.print(f"top {top} by call_rank / top {top} by value at stake: {ratio:.2f}x")


@app.command()
def notify(
    config: ConfigOption,
    month: MonthOption,
    resend: Annotated[
        bool, typer.Option(help="Send again to recipients who already had this month.")
    ] = False,
) -> None:
    """Email the month's call list: one message per recipient with the alerts that concern
    them (HTML summary, CSV attachment); a month is sent once per recipient."""
    from pipeline.deliver.notify import send_month

    the_month, cfg = _month(month), _load(config)
    try:
        outcome = send_month(cfg, the_month, resend=resend)
    except known_errors() as exc:
        fail_with(exc)
    for line in outcome.lines():
        console.print(line, highlight=False)


def main() -> None:
    """The ``tiers`` command (errors told as ``pipeline.cli_errors`` says)."""
    run_app(app)


if __name__ == "__main__":  # pragma: no cover
    main()
