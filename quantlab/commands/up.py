"""``quantlab up``: start a BF16 server and its quantized twin with vLLM on one GPU.

Prints the ``--endpoint`` flags to give ``quantlab`` / ``quantlab run`` and supervises the
servers in the foreground until Ctrl+C; a server that dies is reported with its log tail.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from quantlab.vllm_launch import (
    DEFAULT_FRACTIONS,
    LaunchError,
    ServerSpec,
    Supervisor,
    check_fractions,
    find_vllm,
    install_stop_handlers,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bf16", required=True, metavar="MODEL", help="the reference model")
    p.add_argument("--quant", required=True, metavar="MODEL", help="the quantized model")
    p.add_argument("--quant-name", default="quant", help="lane name of the quant (e.g. awq)")
    p.add_argument(
        "--quantization",
        help="vLLM --quantization for the quant (awq, gptq, fp8…; usually auto-detected)",
    )
    p.add_argument("--port", type=int, default=8000, help="reference port; the quant gets +1")
    p.add_argument(
        "--gpu-memory-utilization",
        default=",".join(str(f) for f in DEFAULT_FRACTIONS),
        metavar="REF,QUANT",
        help="fractions of the WHOLE GPU for each server (default %(default)s)",
    )
    p.add_argument("--max-model-len", type=int, help="cap the context (and KV cache)")
    p.add_argument("--dtype", default="bfloat16", help="--dtype for both (default bfloat16)")
    p.add_argument("--vllm-bin", help="command that runs vLLM's CLI (default: vllm on PATH)")
    p.add_argument("--vllm-arg", action="append", default=[], help="extra flag for both")
    p.add_argument("--health-timeout", type=float, default=900.0, help="seconds per server")
    p.add_argument("--log-dir", default="sessions/logs", help="server logs (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, start nothing")


def _specs(args: argparse.Namespace) -> list[ServerSpec]:
    try:
        fractions = [float(x) for x in str(args.gpu_memory_utilization).split(",")]
    except ValueError as exc:
        raise LaunchError(f"--gpu-memory-utilization: {exc}") from exc
    if len(fractions) != 2:
        raise LaunchError("--gpu-memory-utilization takes two fractions: REF,QUANT")
    check_fractions(fractions)
    common = {"max_model_len": args.max_model_len, "dtype": args.dtype}
    extra = [a for arg in args.vllm_arg for a in arg.split()]
    return [
        ServerSpec(
            name="bf16",
            model=args.bf16,
            port=args.port,
            gpu_memory_utilization=fractions[0],
            role="reference",
            extra_args=extra,
            **common,
        ),
        ServerSpec(
            name=args.quant_name,
            model=args.quant,
            port=args.port + 1,
            gpu_memory_utilization=fractions[1],
            quantization=args.quantization,
            extra_args=extra,
            **common,
        ),
    ]


def run(args: argparse.Namespace) -> int:
    try:
        specs = _specs(args)
        vllm_cmd = ["vllm"] if args.dry_run and not args.vllm_bin else find_vllm(args.vllm_bin)
    except LaunchError as exc:
        print(f"quantlab up: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for spec in specs:
            print(" ".join(spec.argv(vllm_cmd)))
        return 0
    sup = Supervisor(specs, vllm_cmd, Path(args.log_dir))
    install_stop_handlers(sup.stop)
    try:
        endpoints = sup.start(args.health_timeout, on_event=lambda m: print(m, file=sys.stderr))
    except LaunchError as exc:
        print(f"quantlab up: {exc}", file=sys.stderr)
        return 1
    flags = " ".join(f"--endpoint {e.name}={e.base_url}" for e in endpoints)
    print(f"ready. In another terminal:\n  quantlab {flags}\n  quantlab run sanity {flags}")
    print("Ctrl+C stops both servers.", file=sys.stderr)
    try:
        while True:
            dead = sup.first_dead()
            if dead is not None:
                print(
                    f"quantlab up: server {dead.spec.name!r} exited "
                    f"(status {dead.proc.returncode}); last log lines:\n{dead.tail_text()}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping servers…", file=sys.stderr)
        return 0
    finally:
        sup.stop()
