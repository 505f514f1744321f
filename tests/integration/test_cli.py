"""The `tiers` command line: help, readable errors, run and backfill."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.months import parse_month

from golden import expected_rows
from support import csv_config, files_of, write_payments

cli = CliRunner()


@pytest.mark.parametrize("command", [[], ["extract"], ["run"], ["backfill"], ["demo"]])
def test_help_is_clean(command) -> None:
    result = cli.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    assert "Traceback" not in result.output


def test_bad_input_is_a_readable_error_not_a_traceback(tmp_path: Path) -> None:
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "1,00.0", "EUR")])
    csv_config(tmp_path, source)
    result = cli.invoke(app, ["extract", "-c", str(tmp_path / "tiers.toml"), "-m", "2026-01"])
    assert result.exit_code == 1
    assert "unparseable amount: 1 row(s)" in result.output
    assert "Traceback" not in result.output
    quarantined = cli.invoke(
        app, ["extract", "-c", str(tmp_path / "tiers.toml"), "-m", "2026-01", "--quarantine"]
    )
    assert quarantined.exit_code == 0, quarantined.output
    assert "1 quarantined" in quarantined.output


def test_messages_are_printed_verbatim(tmp_path: Path) -> None:
    """Square brackets are TOML section names, not markup; long lines stay whole."""
    (tmp_path / "tiers.toml").write_text(
        '[source]\nkind = "csv"\npath = "p.csv"\n[lake]\nnope = 1\n'
    )
    result = cli.invoke(app, ["run", "-c", str(tmp_path / "tiers.toml"), "-m", "2026-01"])
    assert result.exit_code == 2
    assert "lake.nope" in result.output
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "1.5.0", "EUR")])
    csv_config(tmp_path, source)
    bad = cli.invoke(app, ["extract", "-c", str(tmp_path / "tiers.toml"), "-m", "2026-01"])
    assert bad.exit_code == 1
    assert "[lake] quarantine = true" in bad.output  # the hint names the section as written
    assert "[unparseable amount] payment_id='p1'" in bad.output
    long_line = next(line for line in bad.output.splitlines() if "has 1 bad row(s)" in line)
    assert str(source) in long_line and "nothing of this month was written" in long_line


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "tiers.toml").write_text('[source]\nkind = "csv"\n[business]\n')
    result = cli.invoke(app, ["run", "-c", str(tmp_path / "tiers.toml"), "-m", "2026-01"])
    assert result.exit_code == 2
    assert "source.path is required" in result.output
    assert "business.history_start" in result.output


def test_bad_month_argument(tmp_path: Path) -> None:
    result = cli.invoke(app, ["run", "-c", "x.toml", "-m", "March"])
    assert result.exit_code == 2
    assert "not a month" in result.output


def test_backfill_and_run_with_cascade(golden, tmp_path: Path) -> None:
    csv_config(tmp_path, golden / "basics" / "payments.csv")
    config = str(tmp_path / "tiers.toml")
    result = cli.invoke(app, ["backfill", "-c", config, "--from", "2026-01", "--to", "2026-03"])
    assert result.exit_code == 0, result.output
    assert "2026-03" in result.output and "Monthly summary" in result.output
    # each summary row holds the month's own figures (golden basics, revenue, window 1)
    summary = {
        (r["month"], r["metric"], r["window_months"]): r
        for r in expected_rows("basics", "pareto_summary")
    }
    for month in ("2026-01", "2026-02", "2026-03"):
        first = parse_month(month)
        expected = summary[(first, "revenue", 1)]
        vips = sum(
            r["segment"] == "vip" and r["metric"] == "revenue"
            for r in expected_rows("basics", "customer_segment", {first})
        )
        alerts = sum(
            r["metric"] == "revenue" for r in expected_rows("basics", "customer_alert", {first})
        )
        cells = next(line for line in result.output.splitlines() if f"│ {month} │" in line)
        numbers = [c.strip() for c in cells.split("│") if c.strip()]
        assert numbers == [
            month,
            str(expected["n_customers"]),
            str(vips),
            str(expected["n_class_a"]),
            str(expected["n_class_b"]),
            str(expected["n_class_c"]),
            str(alerts),
            f"{expected['total_value']:,}",
        ]
    cascade = cli.invoke(app, ["run", "-c", config, "-m", "2026-02", "--cascade"])
    assert cascade.exit_code == 0, cascade.output
    assert "2026-02: loaded" in cascade.output


def test_warehouse_init_and_grant_reader_needs_postgres(tmp_path: Path) -> None:
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "1.00", "EUR")])
    csv_config(tmp_path, source)
    config = str(tmp_path / "tiers.toml")
    assert cli.invoke(app, ["warehouse", "init", "-c", config]).exit_code == 0
    refused = cli.invoke(app, ["warehouse", "grant-reader", "-c", config])
    assert refused.exit_code == 1
    assert "needs a PostgreSQL warehouse" in refused.output


def test_a_catalog_moved_without_its_folder_is_refused_and_a_whole_move_is_published(
    golden, tmp_path: Path
) -> None:
    """Moving warehouse.duckdb alone, then running a month, would publish a catalog of
    that month only; it is refused untouched. Moved with its folder, `tiers warehouse
    init` publishes every month again, from the new place."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()

    def configured(catalog: Path) -> str:
        url = f"duckdb:///{catalog}"
        csv_config(tmp_path, golden / "basics" / "payments.csv", warehouse={"url": url})
        return str(tmp_path / "tiers.toml")

    config = configured(old / "warehouse.duckdb")
    loaded = cli.invoke(app, ["backfill", "-c", config, "--from", "2026-01", "--to", "2026-02"])
    assert loaded.exit_code == 0, loaded.output
    (old / "warehouse.duckdb").rename(new / "warehouse.duckdb")
    config = configured(new / "warehouse.duckdb")
    before = files_of(old), files_of(new), sorted(new.iterdir())
    for command in (["run", "-c", config, "-m", "2026-03"], ["warehouse", "init", "-c", config]):
        refused = cli.invoke(app, command)
        assert refused.exit_code == 1, refused.output
        message = " ".join(refused.output.split())  # the message as one line
        assert "Traceback" not in refused.output
        assert f"warehouse {new / 'warehouse.duckdb'}: this catalog shows months" in message
        assert "2026-01, 2026-02 from files in " + str(old / "warehouse.duckdb.d") in message
        assert f"its own folder {new / 'warehouse.duckdb.d'} is missing" in message
        assert f"move the folder {old / 'warehouse.duckdb.d'} with the file" in message
        assert "then run `tiers warehouse init`" in message
        assert (files_of(old), files_of(new), sorted(new.iterdir())) == before

    (old / "warehouse.duckdb.d").rename(new / "warehouse.duckdb.d")
    init = cli.invoke(app, ["warehouse", "init", "-c", config])
    assert init.exit_code == 0, init.output
    assert catalog_months(new / "warehouse.duckdb") == ["2026-01", "2026-02"]
    assert cli.invoke(app, ["run", "-c", config, "-m", "2026-03"]).exit_code == 0
    assert catalog_months(new / "warehouse.duckdb") == ["2026-01", "2026-02", "2026-03"]


def catalog_months(catalog: Path) -> list[str]:
    """The months a BI tool sees in the catalog (it reads every file its views name)."""
    with duckdb.connect(str(catalog), read_only=True) as con:
        rows = con.sql("SELECT DISTINCT strftime(month, '%Y-%m') FROM customer_month ORDER BY 1")
        return [month for (month,) in rows.fetchall()]


def test_an_unforeseen_fault_is_one_message_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    """The warehouse cannot be reached: the `tiers` command (its real entry point) says
    what failed, in which step and month, where it was recorded, and hides the password;
    --debug shows the traceback."""
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "1.00", "EUR")])
    csv_config(tmp_path, source, warehouse={"url": "postgresql://tiers:hunter2@127.0.0.1:1/x"})
    tiers = [str(Path(sys.executable).with_name("tiers")), "run", "-c", "tiers.toml"]
    result = subprocess.run(
        [*tiers, "-m", "2026-01"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert "Connection refused" in result.stderr
    assert "step load of month 2026-01" in result.stderr
    assert "run.json" in result.stderr  # the failure could not be recorded in the warehouse
    assert "postgresql://tiers:***@127.0.0.1:1/x cannot be reached" in result.stderr
    assert "warehouse.url" in result.stderr  # what to check
    debug = subprocess.run(
        [*tiers, "-m", "2026-01", "--debug"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_foreseen_error_outside_a_step_is_told_without_the_debug_hint(tmp_path: Path) -> None:
    """`warehouse init` has no step around it: a warehouse that cannot be reached is still
    a foreseen error (pipeline/errors.py), told as one message, exit 1."""
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "1.00", "EUR")])
    csv_config(tmp_path, source, warehouse={"url": "postgresql://tiers:hunter2@127.0.0.1:1/x"})
    tiers = str(Path(sys.executable).with_name("tiers"))
    result = subprocess.run(
        [tiers, "warehouse", "init", "-c", "tiers.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: warehouse postgresql://tiers:***@127.0.0.1:1/x ")
    assert "cannot be reached" in result.stderr and "hunter2" not in result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr


def test_a_failed_month_of_a_backfill_says_whether_a_retry_can_help(tmp_path: Path) -> None:
    from pipeline.errors import PERMANENT
    from pipeline.run import backfill

    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "1,00.0", "EUR")])
    # no gates: their warm-up import would outlive the test
    cfg = csv_config(tmp_path, source, lake={"quarantine": False}, checks={"enabled": False})
    (result,) = backfill.backfill(cfg, date(2026, 1, 1), date(2026, 1, 1))
    assert (result.status, result.kind) == ("failed", PERMANENT)  # bad input: fix the source
    assert "unparseable amount" in result.error


def test_unforeseen_errors_never_show_a_password() -> None:
    from pipeline.cli_errors import plain

    error = OSError("cannot reach postgresql://tiers:hunter2@db:5432/x?sslmode=require")
    error.add_note("(retry with host=db password=hunter2 user=tiers)")
    text = plain(error)
    assert "hunter2" not in text
    assert "postgresql://tiers:***@db:5432/x" in text and "password=***" in text


def test_a_month_that_has_not_ended_is_refused_unless_provisional(tmp_path: Path) -> None:
    """The current month is still receiving payments: by default nothing of it is written;
    --provisional loads it and pipeline_run and month_load say provisional."""
    from datetime import UTC, datetime

    from pipeline.config import load_config
    from pipeline.warehouse import open_warehouse

    now = datetime.now(UTC)
    month = f"{now.year}-{now.month:02d}"
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", f"{month}-01", "1.00", "EUR")])
    csv_config(tmp_path, source, history_start=month)
    config = str(tmp_path / "tiers.toml")
    refused = cli.invoke(app, ["run", "-c", config, "-m", month])
    assert refused.exit_code == 1
    assert f"month {month} has not ended in UTC" in refused.output
    assert "--provisional" in refused.output and "nothing was written" in refused.output
    assert not (tmp_path / "lake" / "payments" / f"month={month}").exists()

    loaded = cli.invoke(app, ["run", "-c", config, "-m", month, "--provisional"])
    assert loaded.exit_code == 0, loaded.output
    warehouse = open_warehouse(load_config(config))
    try:
        records = sorted(
            warehouse.read_table("pipeline_run").to_pylist(), key=lambda r: r["recorded_at"]
        )
        # the refusal is recorded as a failed attempt; the provisional load after it
        assert [r["status"] for r in records] == ["failed", "provisional"]
        assert "has not ended" in records[0]["error"] and records[1]["rows_loaded"] > 0
        assert warehouse.read_table("customer_month").num_rows == 1
    finally:
        warehouse.close()
    import duckdb

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("select load_status from month_load").fetchall() == [("provisional",)]
