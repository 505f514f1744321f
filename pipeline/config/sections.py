"""The sections of the configuration file ([source], [business], [lake], ...): one pydantic
model each, validated as it is read (unknown keys are an error). ``Config``, in
``pipeline.config``, gathers them.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from pipeline.months import format_month, parse_month
from pipeline.schema.inputs import (
    CANONICAL_COLUMNS,
    CUSTOMER_COLUMNS,
    REQUIRED_COLUMNS,
    SERVICE_COLUMNS,
    SERVICE_REQUIRED_COLUMNS,
)
from pipeline.storage import is_url

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _exact_decimal(value: Any) -> Any:
    # TOML floats arrive as binary floats: 0.8 must mean exactly 0.80, not 0.8000000000000000444.
    return Decimal(str(value)) if isinstance(value, float) else value


ExactShare = Annotated[Decimal, BeforeValidator(_exact_decimal), Field(ge=0, le=1)]


class Section(BaseModel):
    """A section of the file: a key it does not know is an error (a misspelt key)."""

    model_config = ConfigDict(extra="forbid")


class _TableSource(Section):
    """Where rows are read from: a CSV or Parquet file (or glob), a DuckDB table or
    PostgreSQL; the payments ([source]) and the customer attributes ([customers]) alike."""

    section: ClassVar[str]  # the TOML section, for messages
    known_columns: ClassVar[tuple[str, ...]]  # the canonical names [<section>.columns] maps
    required_columns: ClassVar[tuple[str, ...]] = ()  # of those, the ones a source must have
    time_column: ClassVar[str | None] = None  # the column that places a row in its month

    kind: Literal["csv", "parquet", "duckdb", "postgres"]
    path: str | None = None
    table: str | None = None
    query: str | None = None
    dsn: str | None = Field(default=None, repr=False)
    delimiter: str = ","
    columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(cls.known_columns))
        if unknown:
            raise ValueError(
                f"unknown {cls.section} column(s) {unknown}; known: {list(cls.known_columns)}"
            )
        return value

    @field_validator("table")
    @classmethod
    def _safe_table(cls, value: str | None) -> str | None:
        if value is not None and not all(_IDENTIFIER.match(p) for p in value.split(".")):
            raise ValueError(f"table {value!r} is not a plain identifier like schema.table")
        return value

    @model_validator(mode="after")
    def _kind_needs(self) -> _TableSource:
        name = self.section
        if self.kind in ("csv", "parquet", "duckdb") and not self.path:
            raise ValueError(f"{name}.path is required for kind = {self.kind!r}")
        if self.kind == "duckdb" and not self.table:
            raise ValueError(f"{name}.table is required for kind = 'duckdb'")
        if self.kind == "postgres" and not (self.table or self.query):
            raise ValueError(f"{name}.table or {name}.query is required for kind = 'postgres'")
        if len(self.delimiter) != 1:
            raise ValueError(f"{name}.delimiter must be a single character")
        return self

    def source_column(self, canonical: str) -> str:
        """The source's own name for a canonical column."""
        return self.columns.get(canonical, canonical)


class SourceConfig(_TableSource):
    section: ClassVar[str] = "source"
    known_columns: ClassVar[tuple[str, ...]] = CANONICAL_COLUMNS
    required_columns: ClassVar[tuple[str, ...]] = REQUIRED_COLUMNS
    time_column: ClassVar[str | None] = "paid_at"

    decimal_separator: Literal[".", ","] = "."


class ServiceConfig(SourceConfig):
    """The optional source of service activities, read exactly like the payments: the same
    kinds, column mapping, judging, duplicates, quarantine and lake partitions."""

    section: ClassVar[str] = "service"
    known_columns: ClassVar[tuple[str, ...]] = SERVICE_COLUMNS
    required_columns: ClassVar[tuple[str, ...]] = SERVICE_REQUIRED_COLUMNS
    time_column: ClassVar[str | None] = "occurred_at"


class BusinessConfig(Section):
    timezone: str = "UTC"
    currency: str = "EUR"
    history_start: date

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/Oslo')"
            ) from exc
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"currency {value!r} is not an ISO 4217 code such as 'EUR'")
        return value

    @field_validator("history_start", mode="before")
    @classmethod
    def _month(cls, value: Any) -> date:
        return parse_month(value)

    def before_start(self, month: date) -> str | None:
        """Why ``month`` is not part of the history (it lies before history_start: such a
        month has no payments by definition), or None when it is."""
        if month >= self.history_start:
            return None
        start = format_month(self.history_start)
        return (
            f"month {format_month(month)} lies before the history's start, [business] "
            f'history_start = "{start}": a month before it has no payments by definition, so '
            f"it is neither extracted nor computed; nothing was written. Run a month from {start} "
            "on, or, if the history really starts earlier, set [business] history_start to its "
            f"first month. (A payment the source dates before {start} belongs to no month.)"
        )


def _root(value: Any) -> str | Path:
    """A local folder, or an object-store URL kept as text (``Path`` would fold its ``//``)."""
    if is_url(value):
        return str(value)
    if isinstance(value, str) and "://" in value:
        raise ValueError(
            f"{value!r}: an object store is named s3://bucket/prefix (or gs://, abfs://); "
            "anything else is a local folder"
        )
    return Path(value)


StorageRoot = Annotated[str | Path, BeforeValidator(_root)]


class LakeConfig(Section):
    root: StorageRoot = Path("lake")  # or s3://bucket/prefix (pipeline/storage.py)
    quarantine: bool = False
    # DuckDB's memory for each step of a month (extract, compute, checks); beyond it
    # DuckDB spills to <root>/.spill (an object-store lake: a local temporary folder).
    # 2GB computes a month of 10M payments / 1M customers (512MB ran out in its window
    # functions); the process then peaks near 3.5 GB
    memory_limit: str = "2GB"
    # a month's files that its manifest no longer names (a replaced version of the month)
    # are removed by its next extract once replaced longer ago than this, so that a run
    # still reading the manifest it read, or a concurrent writer, finds its files
    orphan_grace_seconds: int = Field(default=3600, ge=0)
    # seconds a run of a month waits for another run of it on this machine to end (and an
    # extract for another writer of the month's partition)
    lock_timeout: float = Field(default=3600.0, ge=0)


class WarehouseConfig(Section):
    url: str = "duckdb:///warehouse.duckdb"
    schema_name: str = Field(default="tiers", alias="schema")
    # seconds a DuckDB warehouse load waits for another writer before it gives up
    lock_timeout: float = Field(default=600.0, ge=0)

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not value.startswith(("duckdb://", "postgresql://", "postgres://")):
            raise ValueError("warehouse.url must start with duckdb:/// or postgresql://")
        return value

    @field_validator("schema_name")
    @classmethod
    def _safe_schema(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"warehouse.schema {value!r} is not a plain identifier")
        return value


class SegmentationConfig(Section):
    metrics: list[Literal["revenue", "payments", "units", "margin"]] | None = None
    windows: list[int] = Field(default_factory=lambda: [1, 3, 6, 12])
    a_share: ExactShare = Decimal("0.80")
    b_share: ExactShare = Decimal("0.95")
    vip_share: ExactShare = Decimal("0.20")
    good_share: ExactShare = Decimal("0.20")
    roster_months: int = Field(default=6, ge=1, le=12)
    period_months: int = Field(default=3, ge=1, le=12)
    tier_window_months: int = Field(default=3, ge=1, le=12)
    breakeven_pct: Annotated[Decimal, BeforeValidator(_exact_decimal)] = Decimal("0.05")
    erosion_points: Annotated[Decimal, BeforeValidator(_exact_decimal)] = Decimal("0.10")
    erosion_lookback_months: int = Field(default=3, ge=1, le=11)
    xyz_months: int = Field(default=12, ge=2, le=12)
    xyz_x_max_cv: Annotated[Decimal, BeforeValidator(_exact_decimal)] = Decimal("0.5")
    xyz_y_max_cv: Annotated[Decimal, BeforeValidator(_exact_decimal)] = Decimal("1.0")

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[int]) -> list[int]:
        if not value or any(not 1 <= w <= 12 for w in value):
            raise ValueError("windows must be a non-empty list of month counts between 1 and 12")
        return sorted(set(value))

    @model_validator(mode="after")
    def _ordered_shares(self) -> SegmentationConfig:
        if self.a_share > self.b_share:
            raise ValueError(f"a_share ({self.a_share}) must not exceed b_share ({self.b_share})")
        if self.xyz_x_max_cv > self.xyz_y_max_cv:
            raise ValueError("xyz_x_max_cv must not exceed xyz_y_max_cv")
        return self

    @property
    def lookback_months(self) -> int:
        """How many months (M included) the computation of month M reads."""
        return max(
            *self.windows,
            self.roster_months + 1,  # the roster of M-1, for roster changes
            self.period_months,
            self.tier_window_months,
            self.erosion_lookback_months + 1,
            self.xyz_months,
            2,  # M-1 for movements and alerts
        )


class VolumeConfig(Section):
    """How far a month's volume (rows, customers, amount) may move against the median of the
    months before it before the raw gate stops it (a header-only file, a half delivery)."""

    months: int = Field(default=3, ge=1, le=12)  # the months before it that are compared
    # compared only when those months have at least this many rows (median): small months
    # swing by nature, and a young business grows by more than max_rise
    min_rows: int = Field(default=100, ge=1)
    max_drop: ExactShare = Decimal("0.5")  # below median x (1 - max_drop) breaks the rule
    max_rise: Annotated[Decimal, BeforeValidator(_exact_decimal), Field(gt=1)] = Decimal("3")
    # months whose volume change is known and accepted (a genuinely empty month), YYYY-MM
    accept: list[str] = Field(default_factory=list)

    @field_validator("accept")
    @classmethod
    def _months(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_month(text)
        return value


class ChecksConfig(Section):
    enabled: bool = True
    volume: VolumeConfig = Field(default_factory=VolumeConfig)
    # check name -> "error" (stop the month, the default) or "warning" (record and go on)
    severity: dict[str, Literal["error", "warning"]] = Field(default_factory=dict)
    batch_rows: int = Field(default=500_000, ge=1_000)

    @field_validator("severity")
    @classmethod
    def _check_names(cls, value: dict[str, str]) -> dict[str, str]:
        # a misspelt name would silently leave its check at "error"
        pattern = re.compile(r"^(raw|customer_month|outputs|before_load)\.[a-z0-9_.]+$")
        unknown = sorted(name for name in value if not pattern.match(name))
        if unknown:
            raise ValueError(
                f"{unknown} are not check names (raw.*, customer_month.*, outputs.*, "
                "before_load.*: see a gate report for the exact names)"
            )
        return value


class RunConfig(Section):
    root: StorageRoot = Path("runs")  # or s3://bucket/prefix


class CustomersConfig(_TableSource):
    """Customer attributes (name, account owner, any extra columns), read like the source."""

    section: ClassVar[str] = "customers"
    known_columns: ClassVar[tuple[str, ...]] = CUSTOMER_COLUMNS

    @model_validator(mode="after")
    def _postgres_needs_dsn(self) -> CustomersConfig:
        if self.kind == "postgres" and not self.dsn:
            raise ValueError(
                "customers.dsn is required for kind = 'postgres' (TIERS__CUSTOMERS__DSN)"
            )
        return self


class NotifyConfig(Section):
    """Email delivery of the month's call list (SMTP; the password only from the environment)."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    sender: str
    # "starttls" (submission, port 587), "ssl" (implicit TLS, port 465) or "none" (a local relay)
    tls: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    # the name of the environment variable that holds the password (never the password)
    password_env: str = "TIERS_SMTP_PASSWORD"
    recipients: list[str] = Field(min_length=1)  # the default recipients
    # route each customer's alerts to this customer attribute (needs [customers]); None: all
    # alerts go to the default recipients
    route_by: str | None = None
    metric: Literal["revenue", "payments", "units", "margin"] | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    subject_prefix: str = "[customer tiers]"

    @field_validator("recipients", "sender")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        for address in value if isinstance(value, list) else [value]:
            if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", address):
                raise ValueError(f"{address!r} is not an email address like name@example.com")
        return value


class CallListConfig(Section):
    """Whom to call first (README "The call list"): the risk model and the list's caps."""

    # each account owner gets at most this many 'call' rows a month and metric; the rest,
    # and the likely-back wobblers, are 'watch'
    max_calls_per_owner: int = Field(default=20, ge=0)
    # the same cap for the alerts of customers without an owner (the default recipients)
    max_calls: int = Field(default=20, ge=0)
    # the horizon of the expected payments and value at risk
    horizon_months: int = Field(default=3, ge=1, le=12)
    # the BG/NBD fit reads at most this many customers of the history (a deterministic
    # sample by a hash of customer_id); the scores are computed for every alerted customer
    fit_customers: int = Field(default=5000, ge=10)


class ReportConfig(Section):
    # the metric a report shows when --metric is not given (default: the first configured)
    metric: Literal["revenue", "payments", "units", "margin"] | None = None
