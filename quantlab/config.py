"""Which servers to compare and with what defaults: ``quantlab.toml`` and ``--endpoint`` flags.

Endpoints come, in order of precedence, from ``--demo`` (the local pair), ``--endpoint
NAME=URL`` flags, the ``[[endpoints]]`` of ``quantlab.toml``, and else the local pair.
Everything a user typed is checked here, so a mistake is one clear line naming the file
or flag and what is wrong, never a traceback. Example file::

    sessions_dir = "sessions"

    [[endpoints]]
    name = "bf16"
    url = "http://127.0.0.1:8000"
    role = "reference"                 # default: the first endpoint

    [[endpoints]]
    name = "awq"
    url = "http://127.0.0.1:8001/v1"   # a trailing /v1 is fine
    model = "Qwen/Qwen2.5-1.5B-Instruct-AWQ"
    api_key_env = "AWQ_API_KEY"        # the variable's name; the key itself is never stored
    dcgm_url = "http://10.0.0.7:9400"  # that host's dcgm-exporter: its GPUs in Telemetry

    [sampling]
    temperature = 0.0
    top_p = 1.0
    max_tokens = 256
    seed = 0
    system_prompt = "You are a helpful assistant."
    stop = ["</s>"]
    top_logprobs = 20                  # per-token agreement with the reference; 0 = off

    [ui]
    theme = "default"
    telemetry_hz = 4

    [client]
    connect_timeout = 10               # seconds to open a connection
    stall_timeout = 60                 # seconds without a byte from the server
    total_timeout = 600                # seconds for one whole answer
    max_answer_bytes = 8388608         # stream bytes read per answer before a cut-off

Flags ``--connect-timeout``, ``--stall-timeout``, ``--total-timeout`` and
``--max-answer-bytes`` (every command) override ``[client]``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from quantlab.limits import ClientLimits
from quantlab.records import Endpoint, SamplingParams

DEFAULT_CONFIG = "quantlab.toml"
MAX_LANES = 4  # side-by-side columns stop being readable beyond this
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENDPOINT_KEYS = ("name", "url", "model", "role", "api_key_env", "dcgm_url")
_SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "system_prompt",
    "stop",
    "top_logprobs",
)
_UI_KEYS = ("theme", "telemetry_hz")
#: [client] key -> ClientLimits field
_CLIENT_KEYS = {
    "connect_timeout": "connect_s",
    "stall_timeout": "stall_s",
    "total_timeout": "total_s",
    "max_answer_bytes": "max_answer_bytes",
}
#: flag attribute (argparse dest) -> ClientLimits field
_CLIENT_FLAGS = {
    "connect_timeout": "connect_s",
    "stall_timeout": "stall_s",
    "total_timeout": "total_s",
    "max_answer_bytes": "max_answer_bytes",
}
_TOP_KEYS = ("endpoints", "sampling", "ui", "client", "sessions_dir")


class ConfigError(Exception):
    """A configuration or flag the user must fix; the message says where and what."""


@dataclass
class Config:
    """The settings of ``quantlab.toml`` (all defaults when there is no file)."""

    path: Path | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    theme: str | None = None
    telemetry_hz: float = 4.0
    sessions_dir: Path = Path("sessions")
    client: ClientLimits = field(default_factory=ClientLimits)


def load_config(path: str | Path | None = None) -> Config:
    """Read ``path`` (or ``./quantlab.toml`` when it exists); defaults when there is none.

    A path given explicitly must exist.
    """
    explicit = path is not None
    p = Path(path) if path is not None else Path.cwd() / DEFAULT_CONFIG
    if not p.is_file():
        if explicit:
            raise ConfigError(f"{p}: no such config file")
        return Config()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read it: {exc}") from None
    return parse_config(data, p)


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    """Check and convert a parsed TOML document."""
    where = str(path) if path else "config"
    _no_unknown(data, _TOP_KEYS, where, "top level")
    cfg = Config(path=path)

    raw_eps = data.get("endpoints", [])
    if not isinstance(raw_eps, list) or not all(isinstance(e, dict) for e in raw_eps):
        raise ConfigError(f"{where}: 'endpoints' must be [[endpoints]] tables")
    eps = []
    for i, e in enumerate(raw_eps, 1):
        label = f"[[endpoints]] #{i}" + (
            f" ({e['name']!r})" if isinstance(e.get("name"), str) else ""
        )
        eps.append(_endpoint_from_table(e, f"{where}: {label}"))
    if eps:
        cfg.endpoints = assign_roles(eps, where, explicit_roles=True)

    sampling = data.get("sampling", {})
    if not isinstance(sampling, dict):
        raise ConfigError(f"{where}: [sampling] must be a table")
    cfg.sampling = _sampling_from_table(sampling, f"{where}: [sampling]")

    ui = data.get("ui", {})
    if not isinstance(ui, dict):
        raise ConfigError(f"{where}: [ui] must be a table")
    _no_unknown(ui, _UI_KEYS, where, "[ui]")
    if "theme" in ui:
        cfg.theme = _expect(ui["theme"], str, f"{where}: [ui] theme", "a theme name")
    if "telemetry_hz" in ui:
        hz = _number(ui["telemetry_hz"], f"{where}: [ui] telemetry_hz")
        if not 0 < hz <= 60:
            raise ConfigError(f"{where}: [ui] telemetry_hz must be above 0 and at most 60")
        cfg.telemetry_hz = float(hz)

    client = data.get("client", {})
    if not isinstance(client, dict):
        raise ConfigError(f"{where}: [client] must be a table")
    _no_unknown(client, tuple(_CLIENT_KEYS), where, "[client]")
    cfg.client = _limits(
        ClientLimits(),
        {_CLIENT_KEYS[k]: v for k, v in client.items()},
        {f: f"{where}: [client] {k}" for k, f in _CLIENT_KEYS.items()},
    )

    if "sessions_dir" in data:
        sd = _expect(data["sessions_dir"], str, f"{where}: sessions_dir", "a folder path")
        d = Path(sd).expanduser()
        # Relative to the file that says it, so the config means the same from any cwd.
        cfg.sessions_dir = d if d.is_absolute() or path is None else path.parent / d
    return cfg


def normalize_url(url: str, where: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing ``/`` or ``/v1``."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{where}: bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: {url!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: {url!r}: a server URL has no ?query or #fragment")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return f"{parts.scheme}://{parts.netloc}{path}"


def parse_endpoint_flag(spec: str, role: str = "candidate") -> Endpoint:
    """``"bf16=http://host:8000"`` -> Endpoint. The API key, if any, is read from
    ``QUANTLAB_API_KEY_<NAME>`` (name upper-cased, other characters as ``_``) or else
    ``QUANTLAB_API_KEY``; only the variable's name is kept."""
    where = f"--endpoint {spec!r}"
    name, sep, url = spec.partition("=")
    name = name.strip()
    if "://" in name:
        raise ConfigError(f"{where}: give the lane a name first, e.g. bf16={spec.strip()}")
    if not sep or not name or not url.strip():
        raise ConfigError(f"{where}: expected NAME=URL, e.g. bf16=http://127.0.0.1:8000")
    _check_name(name, where)
    ep = Endpoint(name=name, base_url=normalize_url(url, where), role=role)  # type: ignore[arg-type]
    for env in (
        f"QUANTLAB_API_KEY_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}",
        "QUANTLAB_API_KEY",
    ):
        if os.environ.get(env):
            ep.api_key_env = env
            break
    return ep


def assign_roles(
    eps: list[Endpoint], where: str, *, explicit_roles: bool = False
) -> list[Endpoint]:
    """Check names are unique and the lane count; one reference (the first unless a
    config names one), the rest candidates."""
    names = [e.name for e in eps]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ConfigError(f"{where}: endpoint names must be unique; repeated: {', '.join(dups)}")
    if len(eps) > MAX_LANES:
        raise ConfigError(
            f"{where}: {len(eps)} endpoints; at most {MAX_LANES} lanes fit side by side"
        )
    refs = [e.name for e in eps if e.role == "reference"] if explicit_roles else []
    if len(refs) > 1:
        raise ConfigError(f"{where}: only one endpoint can be the reference; got {', '.join(refs)}")
    ref = refs[0] if refs else eps[0].name
    for e in eps:
        e.role = "reference" if e.name == ref else "candidate"
    if refs and eps[0].name != ref:  # the reference is always the first lane
        eps = [e for e in eps if e.name == ref] + [e for e in eps if e.name != ref]
    return eps


# ------------------------------------------------------------------ resolution


@dataclass
class EndpointSetup:
    """The endpoints to use, and whatever quantlab started to serve them (the local pair).

    Use as a context manager, or call :meth:`close`, so that started servers stop.
    """

    endpoints: list[Endpoint]
    source: str  # "flags" | "config" | "local pair"
    pair: Any = None  # quantlab.localpair.LocalPair when quantlab started it

    def close(self) -> None:
        pair, self.pair = self.pair, None
        if pair is not None:
            pair.stop()

    def __enter__(self) -> EndpointSetup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_endpoints(
    args: Any,
    config: Config | None = None,
    *,
    progress: Callable[..., None] | None = None,
) -> EndpointSetup:
    """Endpoints for a command: ``--demo`` -> local pair; ``--endpoint`` flags; the config's
    ``[[endpoints]]``; else the local pair (started here; ``close()`` stops it)."""
    if config is None:
        config = load_config(getattr(args, "config", None))
    source = endpoint_source(args, config)
    if source == "flags":
        eps = [parse_endpoint_flag(f) for f in getattr(args, "endpoint", None) or []]
        return EndpointSetup(assign_roles(eps, "--endpoint"), "flags")
    if source == "config":
        eps = [Endpoint.from_dict(e.to_dict()) for e in config.endpoints]
        return EndpointSetup(eps, "config")
    return _start_local_pair(progress)


def endpoint_source(args: Any, config: Config) -> str:
    """Where a command's endpoints come from, without starting anything: "flags"
    (``--endpoint``), "config" (``[[endpoints]]``) or "local pair" (``--demo``, or nothing
    given). The one precedence :func:`resolve_endpoints` follows; the UI asks it to know
    whether the slow local-pair start happens inside the app."""
    flags: Sequence[str] = getattr(args, "endpoint", None) or []
    demo = bool(getattr(args, "demo", False))
    if demo and flags:
        raise ConfigError("--demo uses the local pair; leave out --endpoint, or leave out --demo")
    if flags:
        return "flags"
    if config.endpoints and not demo:
        return "config"
    return "local pair"


def _start_local_pair(progress: Callable[..., None] | None) -> EndpointSetup:
    try:
        from quantlab.localpair import LocalPair
    except ImportError as exc:
        raise ConfigError(
            f"no endpoints given and the local pair is not available ({exc}); "
            "use --endpoint NAME=URL or [[endpoints]] in quantlab.toml"
        ) from None
    pair = LocalPair()
    try:
        eps = pair.start(progress=progress)
    except BaseException as exc:
        pair.stop()
        if isinstance(exc, Exception):
            raise ConfigError(f"could not start the local pair: {exc}") from exc
        raise
    return EndpointSetup(list(eps), "local pair", pair)


def client_limits(
    args: Any, config: Config | None = None, *, total_flag: str | None = None
) -> ClientLimits:
    """The client limits for a command: its flags over the config's ``[client]``.

    ``total_flag``: the name of a command's own older flag that also sets the total
    timeout (``--timeout`` of ask and run); ``--total-timeout`` wins when both are given.
    """
    base = config.client if config is not None else ClientLimits()
    given: dict[str, Any] = {}
    names: dict[str, str] = {}
    if total_flag and getattr(args, total_flag, None) is not None:
        given["total_s"] = getattr(args, total_flag)
        names["total_s"] = "--" + total_flag.replace("_", "-")
    for dest, fld in _CLIENT_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            given[fld] = value
            names[fld] = "--" + dest.replace("_", "-")
    return _limits(base, given, names)


def _limits(base: ClientLimits, given: dict[str, Any], names: dict[str, str]) -> ClientLimits:
    """``base`` with ``given`` fields replaced, each checked (``names`` for messages)."""
    out: dict[str, Any] = {}
    for fld, value in given.items():
        where = names[fld]
        if fld == "max_answer_bytes":
            n = _expect(value, int, where, "a whole number of bytes")
            if n < 1024:
                raise ConfigError(f"{where} must be at least 1024 bytes")
            out[fld] = n
        else:
            sec = _number(value, where)
            if not sec > 0:
                raise ConfigError(f"{where} must be above 0 seconds")
            out[fld] = float(sec)
    merged = replace(base, **out)
    if merged.total_s is not None and merged.stall_s > merged.total_s:
        stall = names.get("stall_s", "the stall timeout")
        raise ConfigError(
            f"{stall} ({merged.stall_s:g} s) is longer than the total timeout "
            f"({merged.total_s:g} s): it could never fire"
        )
    return merged


# ------------------------------------------------------------------ helpers


def _endpoint_from_table(e: dict[str, Any], where: str) -> Endpoint:
    _no_unknown(e, _ENDPOINT_KEYS, where, "this endpoint")
    for key in ("name", "url"):
        if key not in e:
            raise ConfigError(f"{where}: missing '{key}'")
    name = _expect(e["name"], str, f"{where}: name", "a string")
    _check_name(name, where)
    url = normalize_url(_expect(e["url"], str, f"{where}: url", "a string"), where)
    ep = Endpoint(name=name, base_url=url)
    if "model" in e:
        ep.model = _expect(e["model"], str, f"{where}: model", "a model id") or None
    if "role" in e:
        if e["role"] not in ("reference", "candidate"):
            raise ConfigError(
                f"{where}: role must be 'reference' or 'candidate', not {e['role']!r}"
            )
        ep.role = e["role"]
    else:
        ep.role = "candidate"
    if "api_key_env" in e:
        env = _expect(e["api_key_env"], str, f"{where}: api_key_env", "a variable name")
        if not _ENV_NAME.match(env):
            raise ConfigError(
                f"{where}: api_key_env is the NAME of an environment variable (like "
                f"VLLM_API_KEY), not {env[:4]!r}…; never put the key itself in the file"
            )
        ep.api_key_env = env
    if "dcgm_url" in e:
        ep.dcgm_url = _dcgm_url(_expect(e["dcgm_url"], str, f"{where}: dcgm_url", "a URL"), where)
    return ep


def _dcgm_url(url: str, where: str) -> str:
    """A dcgm-exporter's metrics URL; a bare ``http://host:9400`` means its ``/metrics``."""
    base = normalize_url(url, f"{where}: dcgm_url")
    return base if urlsplit(base).path else base + "/metrics"


def _sampling_from_table(t: dict[str, Any], where: str) -> SamplingParams:
    _no_unknown(t, _SAMPLING_KEYS, where.rsplit(": ", 1)[0], "[sampling]")
    sp = SamplingParams()
    if "temperature" in t:
        sp.temperature = float(_number(t["temperature"], f"{where} temperature"))
        if sp.temperature < 0:
            raise ConfigError(f"{where} temperature must be 0 or more")
    if "top_p" in t:
        sp.top_p = float(_number(t["top_p"], f"{where} top_p"))
        if not 0 < sp.top_p <= 1:
            raise ConfigError(f"{where} top_p must be above 0 and at most 1")
    if "max_tokens" in t:
        sp.max_tokens = _expect(t["max_tokens"], int, f"{where} max_tokens", "a whole number")
        if sp.max_tokens < 1:
            raise ConfigError(f"{where} max_tokens must be 1 or more")
    if "seed" in t:
        sp.seed = _expect(t["seed"], int, f"{where} seed", "a whole number")
    if "system_prompt" in t:
        sp.system_prompt = (
            _expect(t["system_prompt"], str, f"{where} system_prompt", "text") or None
        )
    if "stop" in t:
        stop = t["stop"]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise ConfigError(f"{where} stop must be a list of non-empty strings")
        sp.stop = stop or None
    if "top_logprobs" in t:  # token-level agreement: top-k asked of every lane, 0 = off
        k = _expect(t["top_logprobs"], int, f"{where} top_logprobs", "a whole number")
        if k < 0:
            raise ConfigError(f"{where} top_logprobs must be 0 (off) or more")
        sp.top_logprobs = k or None
    return sp


def _check_name(name: str, where: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}: lane name {name!r} must be 1-32 letters, digits, '_', '.' or '-'"
        )


def _no_unknown(t: dict[str, Any], known: Sequence[str], where: str, what: str) -> None:
    unknown = [k for k in t if k not in known]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} in {what} "
            f"(known: {', '.join(known)})"
        )


def _expect(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {what}, not {value!r}")
    return value


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, not {value!r}")
    return value
