"""Shared fixtures on real servers.

``local_pair``: the real local pair (two llama.cpp servers, SmolLM2-135M-Instruct in BF16
and Q4_0), started once for the whole test session on loopback ports the OS picks, and
stopped at the end. The model files are built once into the user cache (``$QUANTLAB_CACHE``
or ``~/.cache/quantlab``): the first run ever takes ~15 s more.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator

import pytest

from quantlab.localpair import LocalPair, TextProgress
from quantlab.records import Endpoint

# Signal tests send SIGHUP / SIGINT to the processes they start and expect them to stop.
# A disposition of "ignore" is inherited across exec: run under nohup, or as a background
# job of a non-interactive shell (SIGINT), every child would ignore them and those tests
# would fail for the runner's reasons, not quantlab's. Start the children as a terminal
# session would. (quantlab itself keeps honouring an inherited SIG_IGN: that is what a user
# who runs it under nohup asked for.)
for _sig in (signal.SIGHUP, signal.SIGINT):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL if _sig == signal.SIGHUP else signal.default_int_handler)


@pytest.fixture(scope="session")
def local_pair() -> Iterator[list[Endpoint]]:
    """``[bf16 (reference), q4_0 (candidate)]``, both ``http://127.0.0.1:PORT`` with
    ``model``, ``backend``, ``quantization``, ``max_context``, ``slots`` and ``pid`` set.
    The list is shared by every test: copy an Endpoint before changing it."""
    pair = LocalPair()
    try:
        with TextProgress(sys.stderr, prefix="local_pair: ") as progress:
            endpoints = pair.start(progress=progress)
        yield endpoints
    finally:
        pair.stop()
