"""``quantlab up``: start a reference vLLM server and any number of candidates, on one GPU
or placed on several.

One command line, one server per ``--ref`` / ``--cand``; the flags after a server are that
server's, flags before the first server apply to every server::

    quantlab up --max-model-len 8192 --vllm-arg --enforce-eager \\
        --ref bf16=Qwen/Qwen2.5-1.5B-Instruct --mem 0.30 \\
        --cand awq=Qwen/Qwen2.5-1.5B-Instruct-AWQ --quantization awq --mem 0.25 \\
        --cand gptq=Qwen/Qwen2.5-1.5B-Instruct-GPTQ-Int4 --quantization gptq --mem 0.25

Per server: ``--quantization``, ``--dtype`` (default ``auto``: the model's own),
``--mem`` / ``--gpu-memory-utilization`` (a fraction of the whole GPU), ``--port``
(default 8000, then +1 for each next server; before the servers: the first one's),
``--max-model-len``, ``--vllm-arg`` (repeatable; ``--vllm-arg --enforce-eager`` and
``--vllm-arg "--kv-cache-dtype fp8"`` both work) and ``--gpus LIST`` (``0,1,2,3``, ``0-3``:
the server gets that ``CUDA_VISIBLE_DEVICES`` and ``--tensor-parallel-size`` of the list's
length; see :mod:`quantlab.servers.placement` for how indexes are counted). The fractions
must fit on every GPU: servers on disjoint lists may each take 0.9::

    quantlab up --ref M --gpus 0-3 --cand fp8=M --quantization fp8 --gpus 4,5 \\
        --gpu-memory-utilization 0.9

The old two-server form ``--bf16 M --quant M [--quant-name N] [--quantization Q]
[--gpu-memory-utilization A,B]`` still works.

Servers start one after the other, each healthy before the next; a server that dies is
reported with its log tail and the others are stopped. Ctrl+C, SIGTERM and SIGHUP stop
them all. Servers are started from argument lists, never through a shell, and listen on
127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantlab.backends import VLLM, ServeSpec
from quantlab.backends.vllm import VllmLaunchError, find_vllm, parallel_sizes
from quantlab.records import Endpoint
from quantlab.servers import ServerStartError, stop_signals
from quantlab.servers.placement import (
    PlacementError,
    Visible,
    fill_fractions,
    nvml_indexes,
    parse_gpus,
)
from quantlab.servers.supervisor import Launch, Supervisor

#: Options whose value may itself start with "-" (cli.py joins ``--vllm-arg X`` for them).
PASS_THROUGH = ("--vllm-arg",)
DEFAULT_PORT = 8000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


class UpError(ValueError):
    """A command line that cannot start its servers; the message says which part."""


@dataclass(slots=True)
class _Server:
    name: str
    model: str
    role: str
    opts: dict[str, Any] = field(default_factory=dict)


def _split_server(value: str, default_name: str) -> tuple[str, str]:
    """``NAME=MODEL`` or ``MODEL`` (a path or repository id may hold no ``=``)."""
    name, sep, model = value.partition("=")
    if sep and _NAME.fullmatch(name):
        return name, model
    return default_name, value


class _NewServer(argparse.Action):
    """``--ref`` / ``--cand``: a new server; the per-server flags after it are its own."""

    def __call__(
        self, p: argparse.ArgumentParser, ns: argparse.Namespace, value: Any, opt: Any = None
    ) -> None:
        servers: list[_Server] = getattr(ns, "up_servers", None) or []
        role = "reference" if self.dest == "ref" else "candidate"
        n = sum(1 for s in servers if s.role == "candidate") + 1
        name, model = _split_server(str(value), "ref" if role == "reference" else f"cand{n}")
        servers.append(_Server(name, model, role))
        ns.up_servers = servers


class _PerServer(argparse.Action):
    """A flag for the last server named so far, or for all when none is named yet."""

    def __call__(
        self, p: argparse.ArgumentParser, ns: argparse.Namespace, value: Any, opt: Any = None
    ) -> None:
        servers: list[_Server] = getattr(ns, "up_servers", None) or []
        events: list[tuple[int | None, str, Any]] = getattr(ns, "up_events", None) or []
        events.append((len(servers) - 1 if servers else None, self.dest, value))
        ns.up_events = events


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(up_servers=[], up_events=[])
    g = p.add_argument_group("servers (one reference, any number of candidates)")
    g.add_argument("--ref", action=_NewServer, metavar="[NAME=]MODEL", help="the reference")
    g.add_argument(
        "--cand", action=_NewServer, metavar="[NAME=]MODEL", help="a candidate (repeatable)"
    )
    s = p.add_argument_group("per server (after --ref/--cand: that one; before: all)")
    s.add_argument("--quantization", action=_PerServer, help="awq, gptq, fp8… (often auto)")
    s.add_argument("--dtype", action=_PerServer, help="vLLM --dtype (default auto)")
    s.add_argument(
        "--mem",
        "--gpu-memory-utilization",
        dest="mem",
        action=_PerServer,
        metavar="FRACTION",
        help="fraction of each of its GPUs (the servers on one GPU together below 0.95)",
    )
    s.add_argument(
        "--gpus",
        action=_PerServer,
        metavar="LIST",
        help="GPUs to run on (0,1,2,3 or 0-3): CUDA_VISIBLE_DEVICES and tensor parallel of "
        "that many; default: the first visible GPU",
    )
    s.add_argument("--port", action=_PerServer, type=int, help="default 8000, +1 per server")
    s.add_argument("--max-model-len", action=_PerServer, type=int, help="cap the context")
    s.add_argument(
        "--vllm-arg",
        action=_PerServer,
        metavar="FLAG",
        help="extra vLLM flag(s), repeatable: --vllm-arg --enforce-eager",
    )
    old = p.add_argument_group("the two-server form (still understood)")
    old.add_argument("--bf16", metavar="MODEL", help="the reference model")
    old.add_argument("--quant", metavar="MODEL", help="the quantized model")
    old.add_argument("--quant-name", default="quant", help="lane name of --quant")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    p.add_argument("--vllm-bin", help="command that runs vLLM's CLI (default: vllm on PATH)")
    p.add_argument("--health-timeout", type=float, default=900.0, help="seconds per server")
    p.add_argument("--log-dir", default="sessions/logs", help="server logs (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, start nothing")


def _servers(args: argparse.Namespace) -> list[_Server]:
    """The servers the command line names, checked, each with its own flags."""
    servers = [_Server(s.name, s.model, s.role) for s in getattr(args, "up_servers", [])]
    legacy = bool(args.bf16 or args.quant)
    if legacy:
        if servers:
            raise UpError("use either --ref/--cand or the old --bf16/--quant, not both")
        if not (args.bf16 and args.quant):
            raise UpError("the two-server form needs both --bf16 MODEL and --quant MODEL")
        servers = [
            _Server("bf16", args.bf16, "reference"),
            _Server(args.quant_name, args.quant, "candidate"),
        ]
    _check_servers(servers)
    _apply_flags(servers, getattr(args, "up_events", []), legacy=legacy)
    return servers


def _check_servers(servers: list[_Server]) -> None:
    """One reference, at least one candidate, names that are unique and safe."""
    if not servers:
        raise UpError("name the servers: --ref [NAME=]MODEL and one or more --cand [NAME=]MODEL")
    refs = [s for s in servers if s.role == "reference"]
    if len(refs) != 1:
        raise UpError(f"exactly one --ref is needed (got {len(refs)})")
    if not any(s.role == "candidate" for s in servers):
        raise UpError("at least one --cand is needed to compare with the reference")
    for s in servers:
        if not _NAME.fullmatch(s.name):
            raise UpError(f"server name {s.name!r}: letters, digits, '_', '.', '-' only")
        if not s.model:
            raise UpError(f"server {s.name!r} has no model")
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise UpError(f"server names must differ: {', '.join(names)}")


def _apply_flags(
    servers: list[_Server], events: list[tuple[int | None, str, Any]], *, legacy: bool
) -> None:
    """Flags before any server: all servers; after one: that server. In the old form a
    --quantization is the quant's, and "A,B" fractions are the two servers' in order."""
    for index, key, value in events:
        if legacy and key == "quantization":
            index = 1
        if index is None and key == "mem" and "," in str(value):
            parts = str(value).split(",")
            if len(parts) != len(servers):
                raise UpError(f"--gpu-memory-utilization {value}: one fraction per server")
            for s, part in zip(servers, parts, strict=True):
                s.opts["mem"] = part
            continue
        if index is None and key == "port":
            index = 0  # the first server's port; the next ones follow it (+1 each)
        for s in servers if index is None else [servers[index]]:
            if key == "vllm_arg":
                s.opts.setdefault("vllm_arg", []).extend(shlex.split(str(value)))
            else:
                s.opts[key] = value


def _fraction(s: _Server) -> float | None:
    raw = s.opts.get("mem")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise UpError(f"{s.name}: --mem {raw!r} is not a number") from None


@dataclass(slots=True)
class _Placement:
    """Where one server runs: the GPUs counted for memory, the list it was given (None:
    inherited), the ``--tensor-parallel-size`` quantlab adds and its environment."""

    counted: list[int]
    gpus: list[int] | None = None
    tp: int | None = None
    env: dict[str, str] = field(default_factory=dict)


def _place(s: _Server, visible: Visible) -> _Placement:
    """A server's GPUs from ``--gpus`` and its vLLM parallel flags, which must agree."""
    try:
        sizes = parallel_sizes(s.opts.get("vllm_arg", []))
    except VllmLaunchError as exc:
        raise UpError(f"{s.name}: {exc}") from None
    pp, dp = sizes.get("pp", 1), sizes.get("dp", 1)
    text = s.opts.get("gpus")
    if text is None:
        return _Placement(list(range(sizes.get("tp", 1) * pp * dp)))
    try:
        gpus = parse_gpus(str(text))
        visible.check(str(text), gpus)
    except PlacementError as exc:
        raise UpError(f"{s.name}: {exc}") from None
    n, others = len(gpus), pp * dp
    given = sizes.get("tp")
    others_shown = [
        f"--{word}-parallel-size {sizes[key]}"
        for key, word in (("pp", "pipeline"), ("dp", "data"))
        if key in sizes
    ]
    if given is not None and given * others != n:
        product = " × ".join([f"--tensor-parallel-size {given}", *others_shown])
        raise UpError(
            f"{s.name}: --gpus {text} holds {n} GPUs but {product} uses {given * others}: "
            "make them agree, or leave --tensor-parallel-size out (quantlab sets it from "
            "the list)"
        )
    if given is None and n % others:
        raise UpError(
            f"{s.name}: --gpus {text} holds {n} GPUs, not a multiple of {' × '.join(others_shown)}"
        )
    tp = None if given is not None else n // others
    return _Placement(gpus, gpus, tp, visible.env_for(gpus, os.environ))


def specs(args: argparse.Namespace) -> list[ServeSpec]:
    """The servers to start, checked: names, one reference, GPUs, fractions that fit on
    every GPU, ports."""
    servers = _servers(args)
    visible = Visible.here(os.environ)
    places = [_place(s, visible) for s in servers]
    try:
        fractions = fill_fractions(
            [s.name for s in servers], [_fraction(s) for s in servers], [p.counted for p in places]
        )
    except (PlacementError, VllmLaunchError) as exc:
        raise UpError(str(exc)) from None
    out: list[ServeSpec] = []
    next_port = DEFAULT_PORT
    for s, frac, place in zip(servers, fractions, places, strict=True):
        port = s.opts.get("port")
        port = int(port) if port is not None else next_port
        next_port = port + 1
        out.append(
            ServeSpec(
                name=s.name,
                model=s.model,
                port=port,
                host=args.host,
                role="reference" if s.role == "reference" else "candidate",
                quantization=s.opts.get("quantization"),
                dtype=s.opts.get("dtype") or "auto",
                max_model_len=s.opts.get("max_model_len"),
                gpu_memory_utilization=frac,
                served_model_name=s.name,
                extra_args=list(s.opts.get("vllm_arg", [])),
                gpus=place.gpus,
                tensor_parallel_size=place.tp,
                env=place.env,
            )
        )
    ports = [sp.port for sp in out]
    if len(set(ports)) != len(ports):
        raise UpError(f"two servers on one port: {', '.join(map(str, ports))}")
    for sp in out:
        if not 0 < sp.port < 65536:
            raise UpError(f"{sp.name}: port {sp.port} is not a TCP port")
    return out


def endpoint_of(spec: ServeSpec, pid: int | None = None) -> Endpoint:
    return Endpoint(
        name=spec.name,
        base_url=spec.base_url,
        model=spec.served_model_name or spec.name,
        role=spec.role,
        backend=VLLM.name,
        quantization=spec.quantization,
        max_context=spec.max_model_len,
        pid=pid,
        gpus=nvml_indexes(spec.env),
    )


def run(args: argparse.Namespace) -> int:
    try:
        server_specs = specs(args)
        program = ["vllm"] if args.dry_run and not args.vllm_bin else find_vllm(args.vllm_bin)
        argvs = [VLLM.launch_argv(sp, program) for sp in server_specs]
    except (UpError, VllmLaunchError) as exc:
        print(f"quantlab up: {exc}", file=sys.stderr)
        return 2
    log_dir = Path(args.log_dir)
    launches = [
        Launch(
            sp.name,
            argv,
            health_url=sp.base_url + "/health",
            log_path=log_dir / f"{sp.name}.log",
            env=dict(sp.env),
        )
        for sp, argv in zip(server_specs, argvs, strict=True)
    ]
    if args.dry_run:  # each server's environment addition, then its argv
        for launch in launches:
            print(launch.shown())
        return 0
    sup = Supervisor(launches)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    with stop_signals():  # SIGTERM/SIGHUP: stop every server, exit 128 + signal
        try:
            servers = sup.start_sequential(args.health_timeout, say=say)
        except ServerStartError as exc:
            print(f"quantlab up: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted: servers stopped", file=sys.stderr)
            return 130
        try:
            eps = [endpoint_of(sp, sv.pid) for sp, sv in zip(server_specs, servers, strict=True)]
            flags = " ".join(f"--endpoint {e.name}={e.base_url}" for e in eps)
            for e in eps:
                if e.gpus is not None:
                    print(f"{e.name} on GPU {','.join(map(str, e.gpus))}", file=sys.stderr)
            print(
                f"ready. In another terminal:\n  quantlab {flags}\n  quantlab run sanity {flags}",
                flush=True,
            )
            print(f"Ctrl+C stops all {len(eps)} servers.", file=sys.stderr)
            while True:
                dead = sup.first_dead()
                if dead is not None:
                    print(f"quantlab up: {dead.died('')}", file=sys.stderr)
                    return 1
                time.sleep(1.0)
        except KeyboardInterrupt:
            print("stopping servers…", file=sys.stderr)
            return 0
        finally:
            sup.stop()
