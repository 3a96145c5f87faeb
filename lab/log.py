"""Progress lines with timings, so a slow lab step shows where the time goes."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


@contextmanager
def step(what: str):
    start = time.monotonic()
    print(f"lab: {what} ...", file=sys.stderr, flush=True)
    yield
    print(f"lab: {what}: done in {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
