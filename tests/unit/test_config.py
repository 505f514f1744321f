from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError

from support import write_config

MINIMAL = {
    "source": {"kind": "csv", "path": "payments.csv"},
    "business": {"history_start": "2026-01"},
}


def test_minimal_config_has_the_spec_defaults(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, MINIMAL))
    seg = cfg.segmentation
    assert (seg.a_share, seg.b_share) == (Decimal("0.80"), Decimal("0.95"))
    assert (seg.vip_share, seg.good_share) == (Decimal("0.20"), Decimal("0.20"))
    assert seg.windows == [1, 3, 6, 12]
    assert (seg.roster_months, seg.period_months, seg.tier_window_months) == (6, 3, 3)
    assert (seg.breakeven_pct, seg.erosion_points, seg.xyz_months) == (
        Decimal("0.05"),
        Decimal("0.10"),
        12,
    )
    assert seg.lookback_months == 12
    assert cfg.business.timezone == "UTC"
    assert cfg.business.history_start.isoformat() == "2026-01-01"
    assert cfg.lake.quarantine is False


def test_the_months_a_month_reads_and_the_months_that_read_it(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, MINIMAL))  # lookback 12, history from 2026-01
    assert cfg.months_read(date(2027, 3, 1)) == [date(2026, m, 1) for m in range(4, 13)] + [
        date(2027, m, 1) for m in (1, 2, 3)
    ]
    assert cfg.months_read(date(2026, 3, 1)) == [date(2026, m, 1) for m in (1, 2, 3)]
    assert cfg.months_reading(date(2026, 3, 1)) == [date(2026, m, 1) for m in range(3, 13)] + [
        date(2027, 1, 1),
        date(2027, 2, 1),
    ]
    # the two rules are each other's inverse
    for month in cfg.months_reading(date(2026, 5, 1)):
        assert date(2026, 5, 1) in cfg.months_read(month)
    assert date(2026, 5, 1) not in cfg.months_read(date(2027, 5, 1))


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    sections = {**MINIMAL, "lake": {"root": "my-lake"}, "warehouse": {"url": "duckdb:///wh.duckdb"}}
    cfg = load_config(write_config(tmp_path, sections))
    assert cfg.source.path == str(tmp_path / "payments.csv")
    assert cfg.lake.root == tmp_path / "my-lake"
    assert cfg.warehouse.url == f"duckdb:///{tmp_path / 'wh.duckdb'}"


def test_float_shares_are_read_as_exact_decimals(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, {**MINIMAL, "segmentation": {"vip_share": 0.1}}))
    assert cfg.segmentation.vip_share == Decimal("0.1")


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"source": {"kind": "excel", "path": "x"}}, "source.kind"),
        ({"source": {"kind": "csv"}}, "source.path is required"),
        ({"source": {"kind": "duckdb", "path": "x.duckdb"}}, "source.table is required"),
        ({"source": {"kind": "duckdb", "path": "x", "table": "a; drop"}}, "source.table"),
        ({"source": {"kind": "csv", "path": "p", "columns": {"amout": "x"}}}, "amout"),
        ({"business": {"history_start": "2026-13"}}, "business.history_start"),
        ({"business": {"history_start": "2026-01", "timezone": "Mars/Base"}}, "Mars/Base"),
        ({"business": {"history_start": "2026-01", "currency": "euro"}}, "business.currency"),
        ({"segmentation": {"vip_share": 1.5}}, "segmentation.vip_share"),
        ({"segmentation": {"a_share": 0.96}}, "must not exceed b_share"),
        ({"segmentation": {"windows": [0, 3]}}, "segmentation.windows"),
        ({"segmentation": {"vip_shar": 0.2}}, "segmentation.vip_shar"),
        ({"warehouse": {"url": "mysql://x"}}, "warehouse.url"),
        ({"checks": {"severity": {"currency_is_configured": "warning"}}}, "not check names"),
        ({"checks": {"severity": {"raw.currency_is_configured": "ignore"}}}, "checks.severity"),
    ],
)
def test_invalid_keys_are_named(tmp_path: Path, sections: dict, message: str) -> None:
    merged = {name: dict(values) for name, values in MINIMAL.items()}
    for name, values in sections.items():
        merged[name] = {**merged.get(name, {}), **values} if name != "source" else values
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, merged))
    assert message in str(error.value)
    assert str(tmp_path / "tiers.toml") in str(error.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[source\nkind=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_environment_overrides_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL)
    env = {
        "TIERS__WAREHOUSE__URL": "postgresql://bi@db/warehouse",
        "TIERS__SEGMENTATION__VIP_SHARE": "0.25",
        "TIERS__SEGMENTATION__WINDOWS": "[1, 12]",
        "TIERS__LAKE__QUARANTINE": "true",
        "TIERS__BUSINESS__TIMEZONE": "Europe/Oslo",
        "UNRELATED": "1",
    }
    cfg = load_config(path, environ=env)
    assert cfg.warehouse.url == "postgresql://bi@db/warehouse"
    assert cfg.segmentation.vip_share == Decimal("0.25")
    assert cfg.segmentation.windows == [1, 12]
    assert cfg.lake.quarantine is True
    assert cfg.business.timezone == "Europe/Oslo"


def test_environment_override_is_validated_too(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="segmentation.vip_share"):
        load_config(path, environ={"TIERS__SEGMENTATION__VIP_SHARE": "lots"})
