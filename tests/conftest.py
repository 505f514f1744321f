import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from golden import GOLDEN  # noqa: E402


@pytest.fixture(scope="session")
def golden() -> Path:
    if not GOLDEN.exists():
        pytest.fail(f"the golden cases are missing: {GOLDEN} (shared/ must sit beside the repo)")
    return GOLDEN
