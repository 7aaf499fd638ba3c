"""One llama.cpp server in a child process: ``python -m quantlab.localpair.serve``.

xllamacpp runs the server on threads inside the calling process, so each model gets its own
process: the supervisor can then stop it with a signal, and a crash in one model's server
cannot take quantlab down. The child prints one JSON line on stdout once it listens
(``{"event": "listening", "url": …, "port": …}``), then sends stdout to stderr so nothing
else ever lands on that pipe. It exits on SIGTERM, SIGINT and SIGHUP (a SIGHUP that was
ignored when it started, as under ``nohup``, stays ignored).

On Linux it asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``) before
loading anything, then checks that the parent is still the one that started it: together
these close the window in which a ``kill -9`` of quantlab would leave an orphan server.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

#: Defaults shared with the supervisor. Why these values: see LocalPair's docstring.
DEFAULT_KV_TOKENS = 16384
DEFAULT_PARALLEL = 4
DEFAULT_THREADS = 1
DEFAULT_CACHE_RAM_MIB = 256
EXIT_PARENT_GONE = 3
EXIT_START_FAILED = 4
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None) -> bool:
    """Ask for SIGKILL when the parent goes; return False when it is already gone.

    The kernel's "parent" is the thread that forked this process: the supervisor spawns
    from a thread that lives as long as quantlab does.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the supervisor's own stop() still applies
    return parent_pid is None or os.getppid() == parent_pid


def _exit_on(signum: int, _frame: FrameType | None) -> None:
    # os._exit: the server threads hold no state worth flushing, and a normal interpreter
    # shutdown could wait on them.
    sys.stderr.flush()
    os._exit(128 + signum)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m quantlab.localpair.serve",
        description="Serve one GGUF model with llama.cpp (xllamacpp) until signalled.",
    )
    p.add_argument("--model", required=True, help="the .gguf file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port picked by the OS")
    p.add_argument(
        "--ctx",
        type=int,
        default=DEFAULT_KV_TOKENS,
        help="KV cache size in tokens (llama.cpp n_ctx; default %(default)s)",
    )
    p.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="slots (requests)")
    p.add_argument(
        "--kv-unified",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="slots share the KV cache and each may use up to the model's trained context "
        "(default); without it each slot gets ctx/parallel tokens",
    )
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="CPU threads")
    p.add_argument("--name", help="model id the server reports (e.g. smollm2-135m-bf16)")
    p.add_argument(
        "--cache-ram-mib",
        type=int,
        default=DEFAULT_CACHE_RAM_MIB,
        help="host memory for llama.cpp's prompt cache (its own default is 8192)",
    )
    p.add_argument("--parent-pid", type=int, help="exit at once unless this is our parent")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not die_with_parent(args.parent_pid):
        return EXIT_PARENT_GONE
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        signal.signal(sig, _exit_on)
    if not os.path.isfile(args.model):
        print(f"serve: no model file at {args.model}", file=sys.stderr)
        return EXIT_START_FAILED

    import xllamacpp  # late: the parent check above must come first, and this is heavy

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.hostnames = [args.host]
    p.port = args.port
    p.n_ctx = args.ctx
    p.n_parallel = args.parallel
    p.kv_unified = args.kv_unified
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.endpoint_metrics = True
    p.cache_ram_mib = args.cache_ram_mib
    p.ui = False
    if args.name:
        p.model_alias = {args.name}
    try:
        server = xllamacpp.Server(p)
    except Exception as exc:  # xllamacpp raises RuntimeError subclasses and others
        print(f"serve: llama.cpp did not start: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    url = str(server.listening_address)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    line = {"event": "listening", "url": url, "port": port, "pid": os.getpid(), "name": args.name}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the pipe carries that one line only
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
