import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
# pg_support is imported by test modules and loaded as their plugin (fixtures): its asserts
# are rewritten only if it is registered before the first import
pytest.register_assert_rewrite("pg_support")

from golden import GOLDEN  # noqa: E402

# Each folder of tests is a marker (README "Tests"): `make test-fast` runs what needs no
# server. A test that uses PostgreSQL is marked `postgres` by its fixture, wherever it is.
FOLDERS = ("unit", "sql", "integration", "services")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in FOLDERS:
            item.add_marker(folder)
        if "pg_dsn" in item.fixturenames:
            item.add_marker("postgres")


@pytest.fixture(scope="session")
def golden() -> Path:
    if not GOLDEN.exists():
        pytest.fail(f"the golden cases are missing: {GOLDEN} (shared/ must sit beside the repo)")
    return GOLDEN


@pytest.fixture(scope="session")
def full_case(tmp_path_factory, golden):
    """The golden ``full`` case with customer attributes, 2025-10 .. 2026-03 loaded (shared
    by the report and delivery tests: they only read it)."""
    from month_support import load_full_case_with_customers

    return load_full_case_with_customers(tmp_path_factory.mktemp("full_case"))
