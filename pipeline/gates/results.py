"""The gates' results: one CheckResult per check, one GateReport per gate run (its
summary shows each example on one line: ``brief``), and raise_if_failed, which stops a
month when an error-severity check failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import GateFailed

EXAMPLES = 5  # bad values or rows kept per check


def brief(example: Any) -> str:
    """One example on one line."""
    if isinstance(example, dict):
        return ", ".join(f"{k}={v!r}" for k, v in example.items())
    return repr(example)


@dataclass
class CheckResult:
    check: str  # stable name, e.g. "raw.payment_id_unique"
    expectation: str  # the GX expectation type, e.g. "expect_table_row_count_to_equal"
    severity: str  # "error" | "warning"
    success: bool
    unexpected_count: int = 0
    examples: list = field(default_factory=list)  # up to EXAMPLES bad values or rows
    detail: str = ""


@dataclass
class GateReport:
    gate: str
    month: str  # YYYY-MM
    results: list[CheckResult]
    files: list[str]  # the report files written (JSON, HTML)
    inputs: list[str] = field(default_factory=list)  # what was validated
    enabled: bool = True
    seconds: float = 0.0

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "error"]

    @property
    def warned(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "warning"]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def n_passed(self) -> int:
        return sum(r.success for r in self.results)

    @property
    def n_failed(self) -> int:
        return len(self.failed)

    @property
    def n_warned(self) -> int:
        return len(self.warned)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "month": self.month,
            "passed": self.passed,
            "enabled": self.enabled,
            "n_passed": self.n_passed,
            "n_failed": self.n_failed,
            "n_warned": self.n_warned,
            "seconds": round(self.seconds, 3),
            "inputs": list(self.inputs),
            "files": list(self.files),
            "results": [asdict(r) for r in self.results],
        }

    def summary(self) -> str:
        if not self.enabled:
            return f"gate {self.gate} {self.month}: checks disabled ([checks] enabled = false)"
        status = "passed" if self.passed else "FAILED"
        lines = [
            f"gate {self.gate} {self.month}: {status} - {self.n_passed} passed, "
            f"{self.n_failed} failed, {self.n_warned} warning(s) of {len(self.results)} checks"
        ]
        for result in self.failed + self.warned:
            label = "FAILED " if result.severity == "error" else "WARNING"
            lines.append(f"  {label} {result.check} ({result.expectation}): {result.detail}")
            lines += [f"          e.g. {brief(example)}" for example in result.examples]
        if self.files:
            lines.append(f"  report: {self.files[-1]}")
        return "\n".join(lines)


def raise_if_failed(report: GateReport) -> None:
    if not report.passed:
        raise GateFailed(report)
