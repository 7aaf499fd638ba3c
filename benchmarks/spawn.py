"""Start a server script in its own process and read the URL it prints first: the
benchmarks' stand-ins run apart so that their pacing does not share our interpreter."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


def spawn_url(argv: Sequence[str], what: str) -> tuple[subprocess.Popen[str], str]:
    """``argv`` started with stdout piped; returns the process and the URL it printed."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"{what} did not start (said {url!r})")
    return proc, url
