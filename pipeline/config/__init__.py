"""Configuration: one TOML file, validated with pydantic, overridable from the environment.

Environment overrides use ``TIERS__<SECTION>__<KEY>`` (double underscores separate
levels), e.g. ``TIERS__WAREHOUSE__URL=postgresql://...`` or
``TIERS__SEGMENTATION__VIP_SHARE=0.1``. Values are read as TOML literals when they
parse as such (numbers, booleans, arrays), otherwise as plain strings.

This module is the interface: ``Config`` (every section together, paths resolved),
``load_config`` and the environment overrides. Each section's model is in
``pipeline.config.sections``; the canonical input columns are in ``pipeline.schema.inputs``.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from pipeline.config.sections import (
    BusinessConfig,
    CallListConfig,
    ChecksConfig,
    CustomersConfig,
    LakeConfig,
    NotifyConfig,
    ReportConfig,
    RunConfig,
    Section,
    SegmentationConfig,
    ServiceConfig,
    SourceConfig,
    WarehouseConfig,
)
from pipeline.errors import ConfigError
from pipeline.months import add_months, months_between
from pipeline.storage import is_url

ENV_PREFIX = "TIERS__"


class Config(Section):
    source: SourceConfig
    business: BusinessConfig
    lake: LakeConfig = Field(default_factory=LakeConfig)
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    runs: RunConfig = Field(default_factory=RunConfig)
    customers: CustomersConfig | None = None
    service: ServiceConfig | None = None
    notify: NotifyConfig | None = None
    call_list: CallListConfig = Field(default_factory=CallListConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    base_dir: Path = Field(default=Path("."), exclude=True)

    def months_read(self, month: date) -> list[date]:
        """The months the computation of ``month`` reads, oldest first: the
        ``lookback_months`` ending with it (M-11 .. M), none before ``history_start``."""
        lookback = self.segmentation.lookback_months
        return months_between(
            max(self.business.history_start, add_months(month, 1 - lookback)), month
        )

    def months_reading(self, month: date) -> list[date]:
        """The months whose computation reads ``month``, itself first (M .. M+11)."""
        return months_between(month, add_months(month, self.segmentation.lookback_months - 1))

    @model_validator(mode="after")
    def _resolve_paths(self) -> Config:
        base = self.base_dir
        if self.source.path and self.source.kind != "postgres":
            self.source.path = str(_resolve(base, self.source.path))
        if not is_url(self.lake.root):
            self.lake.root = _resolve(base, self.lake.root)
        if not is_url(self.runs.root):
            self.runs.root = _resolve(base, self.runs.root)
        if self.customers and self.customers.path and self.customers.kind != "postgres":
            self.customers.path = str(_resolve(base, self.customers.path))
        if self.service and self.service.path and self.service.kind != "postgres":
            self.service.path = str(_resolve(base, self.service.path))
        if self.notify and self.notify.route_by and self.customers is None:
            raise ValueError("notify.route_by needs a [customers] section to route by")
        prefix = "duckdb:///"
        if self.warehouse.url.startswith(prefix) and self.warehouse.url != prefix + ":memory:":
            self.warehouse.url = prefix + str(_resolve(base, self.warehouse.url[len(prefix) :]))
        return self


def _resolve(base: Path, path: str | Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_env_overrides(data: dict[str, Any], environ: dict[str, str] | None = None) -> dict:
    environ = os.environ if environ is None else environ
    for key, text in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {'.'.join(path[:-1])} is not a section")
        if path:
            node[path[-1]] = _env_value(text)
    return data


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read, override from the environment and validate the configuration file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    data = apply_env_overrides(data, environ)
    data["base_dir"] = path.resolve().parent
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: invalid configuration\n{format_validation_error(exc)}"
        ) from None


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  - {key}: {message}")
    return "\n".join(lines)
