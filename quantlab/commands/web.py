"""``quantlab web``: the same TUI in a browser, served by textual-serve.

Each browser tab that connects gets its own ``quantlab`` process (the chat, or ``top``)
started with the flags given here, drawn through textual's web driver. Bound to 127.0.0.1
unless ``--host`` says otherwise: there is no login, so the way in from another machine is
an SSH tunnel, and the command prints it. Everything a person typed (config, port) is
checked before serving, so a mistake is one line here, never a broken page.

textual-serve is imported only when the command runs (it is not textual itself, and this
package never imports textual).
"""

from __future__ import annotations

import argparse
import errno
import shlex
import socket
import sys
from pathlib import Path

from quantlab.config import ConfigError, load_config

VIEWS = ("chat", "top")
PROG = "quantlab web"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "view",
        nargs="?",
        choices=VIEWS,
        default="chat",
        help="what to serve: the chat (default) or top (telemetry only)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: reach it through an SSH tunnel)",
    )
    p.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    p.add_argument(
        "--public-url",
        metavar="URL",
        default=None,
        help="the address the browser uses, when it is not http://HOST:PORT "
        "(e.g. a tunnel to another local port: http://127.0.0.1:9000)",
    )


def child_argv(args: argparse.Namespace) -> list[str]:
    """The command each browser connection runs: this Python, ``-m quantlab``, the common
    flags given here (paths made absolute), and ``top`` when that is the view."""
    argv = [sys.executable, "-m", "quantlab"]
    for spec in getattr(args, "endpoint", None) or []:
        argv += ["--endpoint", spec]
    if getattr(args, "demo", False):
        argv.append("--demo")
    for flag in ("session", "config"):
        value = getattr(args, flag, None)
        if value:
            argv += [f"--{flag}", str(Path(value).expanduser().resolve())]
    if getattr(args, "theme", None):
        argv += ["--theme", args.theme]
    if getattr(args, "view", "chat") == "top":
        argv.append("top")
    return argv


def _check_bind(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served, or None."""
    if not 0 < port < 65536:
        return f"--port {port}: a port is 1-65535"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"--host {host}: cannot resolve it ({exc.strerror})"
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use; pick another with --port"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"--host {host}: not an address of this machine"
            return f"cannot bind {host}:{port}: {exc.strerror}"
    return None


def public_url(host: str, port: int) -> str:
    """What the page's websocket connects back to: the bound address, or this machine's
    name when bound to every address."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        load_config(getattr(args, "config", None))
    except ConfigError as exc:
        _say(str(exc))
        return 2
    why = _check_bind(args.host, args.port)
    if why:
        _say(why)
        return 2
    try:
        from textual_serve.server import Server
    except ImportError as exc:
        _say(f"textual-serve is not installed ({exc}); pip install textual-serve")
        return 2

    class QuietServer(Server):
        async def on_startup(self, app: object) -> None:
            """textual-serve's banner is replaced by the lines printed below."""

    url = args.public_url or public_url(args.host, args.port)
    command = shlex.join(child_argv(args))
    server = QuietServer(command, host=args.host, port=args.port, title="quantlab", public_url=url)
    what = "the chat" if args.view == "chat" else "top (telemetry)"
    print(f"{PROG}: serving {what} at {url}  (Ctrl+C stops it)", flush=True)
    if args.host in ("127.0.0.1", "localhost", "::1"):
        port = args.port
        print(
            f"{PROG}: from another machine: ssh -N -L {port}:127.0.0.1:{port} "
            f"USER@{socket.gethostname()}  then open http://127.0.0.1:{port}",
            flush=True,
        )
    else:
        _say(f"bound to {args.host}: anyone who can reach it gets the TUI (there is no login)")
    server.serve()
    return 0
