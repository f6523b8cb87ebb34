"""Every connector a test builds in process keeps its balances in memory, unless the test says
otherwise: the default store is a file in the working directory, and tests leave no files."""

from __future__ import annotations

import os

os.environ.setdefault("CONNECTOR_STORE_URL", "memory://")
