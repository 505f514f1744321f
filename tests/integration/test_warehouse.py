"""The warehouse as BI tools and operators see it: run attempts, the BI views' answers,
the DuckDB writer lock, superseded files and the one-file layout of earlier versions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import WarehouseLayoutError
from pipeline.schema.tables import DUCKDB_TYPES, PIPELINE_RUN, TABLES
from pipeline.sources.customers import customer_rows
from pipeline.warehouse.duckdb import DuckDBWarehouse
from pipeline.warehouse.postgres import PostgresWarehouse
from pipeline.warehouse.rows import create_table_sql

from golden import expected_rows
from support import files_of

pytest_plugins = ["pg_support"]  # fixtures: pg_dsn, pg_schema

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
FULL_MONTHS = [date(2025 + (m // 12), m % 12 + 1, 1) for m in range(15)]  # 2025-01..2026-03
REPO = Path(__file__).resolve().parents[2]


def golden_tables(month: date) -> dict[str, pa.Table]:
    return {
        name: pa.Table.from_pylist(expected_rows("full", name, {month}), schema=t.arrow_schema())
        for name, t in TABLES.items()
    }


def run(run_id: str, month: date, status: str = "loaded", error: str | None = None) -> dict:
    return {"run_id": run_id, "month": month, "status": status, "error": error}


class Reader:
    """Runs SQL on the warehouse as a BI tool would (DuckDB: the published catalog,
    read-only; PostgreSQL: the warehouse schema)."""

    def __init__(self, warehouse) -> None:
        self.warehouse = warehouse

    def __call__(self, query: str, *params) -> list[tuple]:
        if isinstance(self.warehouse, DuckDBWarehouse):
            con = duckdb.connect(str(self.warehouse.path), read_only=True)
            try:
                return con.execute(query, list(params)).fetchall()
            finally:
                con.close()
        with psycopg.connect(self.warehouse.url, autocommit=True) as conn:
            conn.execute("SELECT set_config('search_path', %s, false)", [self.warehouse.schema])
            return conn.execute(query.replace("?", "%s"), list(params)).fetchall()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path) -> Iterator:
    if request.param == "duckdb":
        each = DuckDBWarehouse(str(tmp_path / "warehouse.duckdb"))
    else:
        each = PostgresWarehouse(
            request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema")
        )
    each.ensure_schema()
    yield each
    each.close()


def test_every_attempt_is_a_row_and_month_load_says_which_run_a_month_holds(warehouse) -> None:
    sql = Reader(warehouse)
    warehouse.load_month(JAN, golden_tables(JAN), run("r1", JAN))
    warehouse.load_month(FEB, golden_tables(FEB), run("r1", FEB))
    # an Airflow retry of the same run fails at a gate: a new attempt, the data stays
    warehouse.record_run(run("r1", FEB, "failed", "raw_gate: 3 bad rows"))
    attempts = [
        (r["run_id"], r["attempt"], r["status"])
        for r in warehouse.read_table("pipeline_run", FEB).to_pylist()
    ]
    assert sorted(attempts) == [("r1", 1, "loaded"), ("r1", 2, "failed")]
    loads = sql(
        "SELECT month, run_id, attempt, last_attempt_status, last_attempt_error, is_current "
        "FROM month_load ORDER BY month"
    )
    assert loads == [
        (JAN, "r1", 1, "loaded", None, False),
        (FEB, "r1", 1, "failed", "raw_gate: 3 bad rows", True),
    ]
    assert warehouse.read_table("customer_month", FEB).num_rows == len(
        expected_rows("full", "customer_month", {FEB})
    )
    warehouse.load_month(FEB, golden_tables(FEB), run("r2", FEB))
    assert sql(
        "SELECT run_id, attempt, last_attempt_status FROM month_load WHERE month = ?", FEB
    ) == [("r2", 1, "loaded")]
    assert sql("SELECT month FROM current_month") == [(FEB,)]


def computed_files(folder: Path, month: date) -> dict[str, Path]:
    """The month's golden tables as the computation leaves them: one Parquet file each,
    written by DuckDB in the schema's types and in key order."""
    con = duckdb.connect()
    files = {}
    for name, table in TABLES.items():
        con.register("rows", golden_tables(month)[name])
        files[name] = folder / f"{name}.parquet"
        order = ", ".join(table.key)
        con.execute(
            f"copy (select {table.duckdb_columns()} from rows order by {order}) "
            f"to '{files[name]}' (format parquet, compression snappy)"
        )
        con.unregister("rows")
    con.close()
    return files


def test_computed_files_are_loaded_as_they_are(warehouse, tmp_path) -> None:
    files = computed_files(tmp_path, FEB)
    warehouse.load_month(FEB, files, run("r1", FEB))
    for name in TABLES:
        loaded = warehouse.read_table(name, FEB).sort_by(
            [(k, "ascending") for k in TABLES[name].key]
        )
        assert loaded.to_pylist() == pq_rows(files[name]), name
    if isinstance(warehouse, DuckDBWarehouse):  # adopted byte for byte, not re-encoded
        state = json.loads((warehouse.data / "state.json").read_text())
        for name, path in files.items():
            adopted = warehouse.data / state["files"][name][FEB.isoformat()]
            assert adopted.read_bytes() == path.read_bytes(), name


def pq_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_a_computed_file_of_other_types_or_months_loads_nothing(warehouse, tmp_path) -> None:
    warehouse.load_month(JAN, golden_tables(JAN), run("r1", JAN))
    before = warehouse.read_table("customer_abc", JAN)
    files = computed_files(tmp_path, JAN)
    con = duckdb.connect()
    wrong_type = tmp_path / "wide_window.parquet"
    con.execute(
        f"copy (select * replace (window_months::bigint as window_months) "
        f"from '{files['customer_abc']}') to '{wrong_type}' (format parquet)"
    )
    with pytest.raises(ValueError, match=r"customer_abc: .*wide_window.parquet has columns"):
        warehouse.load_month(JAN, files | {"customer_abc": wrong_type}, run("r2", JAN))
    other_month = tmp_path / "other_month.parquet"
    con.execute(
        f"copy (select * from '{files['customer_abc']}' union all "
        f"(select * replace (date '2025-02-01' as month) from '{files['customer_abc']}' limit 1)) "
        f"to '{other_month}' (format parquet)"
    )
    con.close()
    with pytest.raises(
        ValueError, match=r"customer_abc has rows of \[datetime.date\(2025, 2, 1\)\]"
    ):
        warehouse.load_month(JAN, files | {"customer_abc": other_month}, run("r3", JAN))
    assert warehouse.read_table("customer_abc", JAN).equals(before)


@pytest.mark.slow
def test_the_bi_views_answer_the_analysts_questions_in_one_query(warehouse) -> None:
    for i, month in enumerate(FULL_MONTHS):
        warehouse.load_month(month, golden_tables(month), run(f"r{i:02d}", month))
    sql = Reader(warehouse)
    last = FULL_MONTHS[-1]
    # "latest" is the last loaded month, not each customer's last active month
    assert sql("SELECT DISTINCT month FROM latest_customer_segment") == [(last,)]
    assert sql("SELECT DISTINCT month FROM latest_customer_tier") == [(last,)]
    vips = {
        (r["metric"], r["customer_id"])
        for r in expected_rows("full", "customer_segment", {last})
        if r["segment"] == "vip"
    }
    assert set(sql("SELECT metric, customer_id FROM current_vip")) == vips
    # the call list's columns are the numbers behind the alert (golden customer_segment)
    segments = {
        (r["month"], r["metric"], r["customer_id"]): (r["rank"], r["value"])
        for r in expected_rows("full", "customer_segment")
    }
    calls = sql(
        "SELECT month, metric, customer_id, alert, previous_rank, previous_value, current_rank, "
        "current_value, value_at_stake, months_as_vip, last_paid_month FROM vip_call_list"
    )
    assert len(calls) == len(expected_rows("full", "customer_alert"))
    checked = 0
    for month, metric, customer, alert, *numbers in calls:
        prev_rank, prev_value, rank, value, at_stake, months, paid = numbers
        before = date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)
        assert (prev_rank, prev_value) == segments.get((before, metric, customer), (None, None))
        assert (rank, value) == segments.get((month, metric, customer), (None, None))
        if alert == "vip_stopped_paying":
            assert (rank, at_stake) == (None, prev_value)
            assert paid in (before, month)  # no value by the metric; a refund is a payment
        elif alert == "vip_dropped":
            assert at_stake == prev_value - value and paid == month
        else:  # margin_erosion: a VIP of this month
            assert rank is not None and paid == month
        assert months >= 1
        checked += 1
    assert checked > 10
    # three kinds of leaving VIP, each under its own name
    exits = dict(sql("SELECT reason, count(*) FROM vip_exit GROUP BY reason"))
    segments = expected_rows("full", "customer_segment")
    alerts = expected_rows("full", "customer_alert")
    changes = expected_rows("full", "vip_roster_change")
    assert exits == {
        "dropped_vip": sum(r["movement"] == "dropped_vip" for r in segments),
        "stopped_paying": sum(r["alert"] == "vip_stopped_paying" for r in alerts),
        "removed_from_roster": sum(r["change"] == "removed" for r in changes),
    }
    # tier names beside numbers; class migration with the previous month's class
    assert set(sql("SELECT DISTINCT tier, tier_name FROM customer_tier_named")) <= {
        (1, "ideal"),
        (2, "good earner"),
        (3, "break-even"),
        (4, "money loser"),
    }
    classes = {
        (r["month"], r["metric"], r["window_months"], r["customer_id"]): r["abc_class"]
        for r in expected_rows("full", "customer_abc")
    }
    migrations = sql(
        "SELECT month, metric, window_months, customer_id, abc_class, previous_abc_class "
        "FROM customer_class_migration"
    )
    assert len(migrations) == len(classes)
    for month, metric, window, customer, abc, previous in migrations:
        before = (date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1),)
        assert abc == classes[(month, metric, window, customer)]
        assert previous == classes.get((*before, metric, window, customer))


LOADER = """
import sys
sys.path[:0] = ["tests", "tests/integration"]
from datetime import date
from pipeline.warehouse.duckdb import DuckDBWarehouse
from test_warehouse import golden_tables, run

warehouse = DuckDBWarehouse(sys.argv[1])
warehouse.ensure_schema()
for text in sys.argv[2:]:
    month = date.fromisoformat(text)
    warehouse.load_month(month, golden_tables(month), run("loader-" + text, month))
warehouse.close()
"""


@pytest.mark.slow
def test_concurrent_duckdb_loaders_queue_on_the_writer_lock(tmp_path) -> None:
    path = tmp_path / "warehouse.duckdb"
    groups = [FULL_MONTHS[i::3] for i in range(3)]
    loaders = [
        subprocess.Popen(
            [sys.executable, "-c", LOADER, str(path), *(m.isoformat() for m in group)],
            cwd=REPO,
            stderr=subprocess.PIPE,
        )
        for group in groups
    ]
    for loader in loaders:
        assert loader.wait(timeout=120) == 0, loader.stderr.read().decode()
    warehouse = DuckDBWarehouse(str(path))
    months = set(warehouse.read_table("customer_month").column("month").to_pylist())
    assert months == set(FULL_MONTHS)  # no load lost to another's read-modify-write
    assert len(warehouse.read_table("pipeline_run")) == len(FULL_MONTHS)
    assert Reader(warehouse)("SELECT count(*) FROM month_load") == [(len(FULL_MONTHS),)]


def test_superseded_files_stay_for_readers_until_the_grace_period_ends(tmp_path) -> None:
    path = str(tmp_path / "warehouse.duckdb")
    warehouse = DuckDBWarehouse(path)
    warehouse.load_month(JAN, golden_tables(JAN), run("r1", JAN))
    files = set((tmp_path / "warehouse.duckdb.d" / "customer_month").rglob("*.parquet"))
    held = duckdb.connect(path, read_only=True)  # a BI tool holding the old catalog
    before = held.execute("SELECT count(*), sum(revenue) FROM customer_month").fetchall()
    relabelled = {
        name: t.set_column(0, "month", pa.array([JAN] * t.num_rows, pa.date32()))
        for name, t in golden_tables(FEB).items()
    }
    warehouse.load_month(JAN, relabelled, run("r2", JAN))  # new content: a new file
    assert held.execute("SELECT count(*), sum(revenue) FROM customer_month").fetchall() == before
    after = set((tmp_path / "warehouse.duckdb.d" / "customer_month").rglob("*.parquet"))
    assert files < after  # the old file is kept while readers may hold it
    held.close()
    DuckDBWarehouse(path, keep_superseded=timedelta(0)).ensure_schema()
    assert len(set((tmp_path / "warehouse.duckdb.d" / "customer_month").rglob("*.parquet"))) == 1
    reloaded = DuckDBWarehouse(path).read_table("customer_month")
    assert reloaded.num_rows == relabelled["customer_month"].num_rows


def test_a_warehouse_file_of_the_one_file_layout_is_carried_over(tmp_path) -> None:
    path = tmp_path / "warehouse.duckdb"
    legacy_run = [(n, k) for n, k in PIPELINE_RUN.columns if n not in ("attempt", "recorded_at")]
    con = duckdb.connect(str(path))
    for name, table in TABLES.items():
        con.execute(create_table_sql(table, DUCKDB_TYPES, name))
        con.register("rows", golden_tables(JAN)[name])
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM rows")
        con.unregister("rows")
    columns = ", ".join(f'"{n}" {DUCKDB_TYPES[k]}' for n, k in legacy_run)
    con.execute(f"CREATE TABLE pipeline_run ({columns}, PRIMARY KEY (run_id, month))")
    con.execute(
        "INSERT INTO pipeline_run (run_id, month, status) VALUES ('old', ?, 'loaded')", [JAN]
    )
    con.close()
    warehouse = DuckDBWarehouse(str(path))
    warehouse.ensure_schema()
    for name in TABLES:
        assert warehouse.read_table(name).num_rows == golden_tables(JAN)[name].num_rows, name
    assert Reader(warehouse)("SELECT run_id, attempt FROM month_load") == [("old", 1)]


def duckdb_warehouse(folder: Path, *months: date) -> DuckDBWarehouse:
    """A DuckDB warehouse in ``folder`` with the golden ``full`` case's ``months`` loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    warehouse = DuckDBWarehouse(str(folder / "warehouse.duckdb"))
    for month in months:
        warehouse.load_month(month, golden_tables(month), run("r1", month))
    return warehouse


def catalog_months(warehouse: DuckDBWarehouse) -> list[date]:
    return [m for (m,) in Reader(warehouse)("SELECT DISTINCT month FROM customer_month ORDER BY 1")]


@pytest.mark.parametrize("fault", ["another warehouse's catalog", "state.json lost"])
def test_a_catalog_its_folder_does_not_hold_is_never_replaced(tmp_path, fault) -> None:
    """Publishing would hide months the catalog shows: every write stops before it
    writes anything, naming the catalog, the folder and what to do."""
    ours = duckdb_warehouse(tmp_path / "ours", MAR)
    if fault == "another warehouse's catalog":  # e.g. copied over ours, without its folder
        theirs = duckdb_warehouse(tmp_path / "theirs", JAN, FEB)
        shutil.copyfile(theirs.path, ours.path)
        expected = [
            f"warehouse {ours.path}: this catalog shows months 2025-01, 2025-02 from files "
            f"in {theirs.data}, but its own folder {ours.data} holds month 2025-03",
            f"move the folder {theirs.data} with the file (to {ours.data}), then run "
            "`tiers warehouse init`",
            f"or point warehouse.url back at duckdb:///{theirs.path}",
        ]
    else:
        ours.load_month(FEB, golden_tables(FEB), run("r1", FEB))
        (ours.data / "state.json").rename(tmp_path / "state.json")
        expected = [
            f"warehouse {ours.path}: this catalog shows months 2025-02, 2025-03, but the "
            f"warehouse's state {ours.data / 'state.json'} is missing",
            f"Restore the folder {ours.data} from a backup",
        ]
    before = files_of(tmp_path)
    writes = {
        "load": lambda: ours.load_month(JAN, golden_tables(JAN), run("r2", JAN)),
        "record_run": lambda: ours.record_run(run("r2", JAN, "failed", "raw_gate")),
        "ensure_schema": ours.ensure_schema,
    }
    for name, write in writes.items():
        with pytest.raises(WarehouseLayoutError) as refused:
            write()
        for words in [*expected, "The warehouse was not changed."]:
            assert words in str(refused.value), (name, str(refused.value))
        assert files_of(tmp_path) == before, name


def test_a_catalog_deleted_by_hand_is_published_again_from_the_state(tmp_path) -> None:
    """state.json is the warehouse; the catalog is drawn from it (by any write)."""
    warehouse = duckdb_warehouse(tmp_path, JAN, FEB)
    warehouse.path.unlink()
    warehouse.ensure_schema()
    assert catalog_months(warehouse) == [JAN, FEB]
    warehouse.path.unlink()
    warehouse.load_month(MAR, golden_tables(MAR), run("r1", MAR))
    assert catalog_months(warehouse) == [JAN, FEB, MAR]


def test_a_catalog_moved_while_it_showed_nothing_is_published_at_its_new_place(tmp_path) -> None:
    (tmp_path / "old").mkdir()
    DuckDBWarehouse(str(tmp_path / "old" / "warehouse.duckdb")).ensure_schema()
    moved = duckdb_warehouse(tmp_path / "new")
    (tmp_path / "old" / "warehouse.duckdb").rename(moved.path)
    moved.load_month(JAN, golden_tables(JAN), run("r1", JAN))  # nothing it showed is lost
    assert catalog_months(moved) == [JAN]


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write, as a BI tool left at its default does
print("open", flush=True)
time.sleep(60)
"""


def test_a_catalog_held_read_write_by_another_process_does_not_stop_a_load(tmp_path) -> None:
    warehouse = duckdb_warehouse(tmp_path, JAN)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse.path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "open\n"
        warehouse.load_month(FEB, golden_tables(FEB), run("r1", FEB))
    finally:
        holder.kill()
        holder.wait()
    assert catalog_months(warehouse) == [JAN, FEB]


def test_a_file_that_is_not_a_catalog_is_not_replaced(tmp_path) -> None:
    warehouse = duckdb_warehouse(tmp_path, JAN)
    warehouse.path.write_bytes(b"not a DuckDB file\n" * 1000)
    before = files_of(tmp_path)
    with pytest.raises(WarehouseLayoutError) as refused:
        warehouse.load_month(FEB, golden_tables(FEB), run("r1", FEB))
    message = str(refused.value)
    assert f"warehouse {warehouse.path} is not a DuckDB catalog that tiers can read" in message
    assert "so it is left as it is" in message
    assert files_of(tmp_path) == before


def test_run_records_written_before_rows_rounded_read_it_as_null(tmp_path) -> None:
    """A run record of an earlier version lacks the columns pipeline_run gained since
    (rows_rounded): the catalog and read_table still read it, the column NULL there."""
    warehouse = DuckDBWarehouse(str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_schema()
    warehouse.record_run(run("old", JAN))
    (old,) = json.loads((warehouse.data / "state.json").read_text())["runs"]
    written = pq.read_table(warehouse.data / old)
    pq.write_table(written.drop_columns(["rows_rounded"]), warehouse.data / old)
    (warehouse.data / "published").unlink()  # as after an upgrade: the catalog is built again
    warehouse.ensure_schema()
    assert Reader(warehouse)("SELECT run_id, rows_rounded FROM pipeline_run") == [("old", None)]
    warehouse.record_run(run("new", FEB) | {"rows_rounded": 3})
    assert Reader(warehouse)("SELECT run_id, rows_rounded FROM pipeline_run ORDER BY month") == [
        ("old", None),
        ("new", 3),
    ]
    runs = warehouse.read_table("pipeline_run").to_pylist()
    assert sorted((r["run_id"], r["rows_rounded"]) for r in runs) == [("new", 3), ("old", None)]
    warehouse.close()


def test_every_table_view_and_column_has_a_description(warehouse) -> None:
    warehouse.load_month(JAN, golden_tables(JAN), run("r1", JAN))
    sql = Reader(warehouse)
    if isinstance(warehouse, DuckDBWarehouse):
        relations = sql("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal")
        columns = sql(
            "SELECT table_name, column_name, comment FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        )
    else:
        relations = sql(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'v')"
        )
        columns = sql(
            "SELECT c.relname, a.attname, col_description(c.oid, a.attnum) FROM pg_class c "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'v')"
        )
    names = {name for name, _ in relations}
    assert {*TABLES, PIPELINE_RUN.name, "month_load", "current_vip", "vip_call_list"} <= names
    assert [name for name, comment in relations if not comment] == []
    assert [(t, c) for t, c, comment in columns if not comment] == []
    assert len(columns) > 150


def test_names_and_owners_reach_the_bi_views(warehouse) -> None:
    """The customer attributes (pipeline.sources.customers) are replaced whole and joined by the
    call list and the current VIPs; a customer the source does not know has NULLs."""
    last = FULL_MONTHS[-1]
    for i, month in enumerate(FULL_MONTHS[-2:]):
        warehouse.load_month(month, golden_tables(month), run(f"r{i:02d}", month))
    called = sorted({r["customer_id"] for r in expected_rows("full", "customer_alert", {last})})
    known, unknown = called[:-1], called[-1]
    attributes = pa.table(
        {
            "customer_id": known,
            "name": [f"Customer {c}" for c in known],
            "owner_email": [f"am{i % 2}@example.com" for i, _ in enumerate(known)],
            "region": ["north"] * len(known),
        }
    )
    warehouse.replace_customers(customer_rows(attributes))
    sql = Reader(warehouse)
    calls = sql(
        "SELECT DISTINCT customer_id, name, owner_email FROM vip_call_list WHERE month = ?", last
    )
    assert {c: (n, o) for c, n, o in calls} == {
        **{c: (f"Customer {c}", f"am{i % 2}@example.com") for i, c in enumerate(known)},
        unknown: (None, None),
    }
    stored = warehouse.read_table("customer")
    assert stored.column("customer_id").to_pylist() == known
    assert json.loads(stored.column("attributes")[0].as_py()) == {"region": "north"}
    vips = sql("SELECT customer_id, name FROM current_vip")
    assert vips and all(name == (f"Customer {c}" if c in known else None) for c, name in vips)
    # replaced whole: a customer dropped from the source leaves the warehouse
    warehouse.replace_customers(customer_rows(attributes.slice(1)))
    assert warehouse.read_table("customer").column("customer_id").to_pylist() == known[1:]
    gone = sql("SELECT name FROM vip_call_list WHERE customer_id = ? AND month = ?", known[0], last)
    assert gone and {name for (name,) in gone} == {None}
