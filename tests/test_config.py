"""quantlab.toml and --endpoint flags: what is accepted, and the message for what is not."""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import pytest

from quantlab.config import (
    Config,
    ConfigError,
    load_config,
    parse_endpoint_flag,
    resolve_endpoints,
)

FULL = """
sessions_dir = "runs"

[[endpoints]]
name = "bf16"
url = "http://127.0.0.1:8000/"

[[endpoints]]
name = "awq"
url = "http://gpu-box:8001/v1"
model = "Qwen/Qwen2.5-1.5B-Instruct-AWQ"
api_key_env = "AWQ_KEY"

[sampling]
temperature = 0.2
top_p = 0.95
max_tokens = 512
seed = 42
system_prompt = "Be brief."
stop = ["</s>"]

[ui]
theme = "night"
telemetry_hz = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "quantlab.toml"
    p.write_text(text, encoding="utf-8")
    return p


def args(*endpoints: str, demo: bool = False, config: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(endpoint=list(endpoints), demo=demo, config=config)


def test_a_full_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    bf16, awq = cfg.endpoints
    assert (bf16.name, bf16.base_url, bf16.role) == ("bf16", "http://127.0.0.1:8000", "reference")
    assert (awq.base_url, awq.role, awq.api_key_env) == (
        "http://gpu-box:8001",
        "candidate",
        "AWQ_KEY",
    )
    assert awq.model == "Qwen/Qwen2.5-1.5B-Instruct-AWQ"
    s = cfg.sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.seed) == (0.2, 0.95, 512, 42)
    assert (s.system_prompt, s.stop) == ("Be brief.", ["</s>"])
    assert (cfg.theme, cfg.telemetry_hz) == ("night", 2.0)
    assert cfg.sessions_dir == tmp_path / "runs"  # relative to the file, not the cwd


def test_no_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.endpoints == [] and cfg.path is None and cfg.sampling.temperature == 0.0


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_a_config_may_name_its_reference_which_becomes_the_first_lane(tmp_path: Path) -> None:
    text = (
        '[[endpoints]]\nname = "q"\nurl = "http://h:1"\n'
        '[[endpoints]]\nname = "ref"\nurl = "http://h:2"\nrole = "reference"\n'
    )
    cfg = load_config(write(tmp_path, text))
    assert [(e.name, e.role) for e in cfg.endpoints] == [("ref", "reference"), ("q", "candidate")]


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("[[endpoints]\nname=1", "not valid TOML"),
        ('[[endpoints]]\nname = "a"\n', "missing 'url'"),
        ('[[endpoints]]\nname = "a"\nurl = "localhost:8000"\n', "not an http:// or https://"),
        ('[[endpoints]]\nname = "a"\nurl = "http://h:1"\nmodle = "x"\n', "unknown key(s) 'modle'"),
        ('[[endpoints]]\nname = "a b"\nurl = "http://h:1"\n', "lane name 'a b'"),
        (
            '[[endpoints]]\nname = "a"\nurl = "http://h:1"\n[[endpoints]]\nname = "a"\n'
            'url = "http://h:2"\n',
            "repeated: a",
        ),
        (
            '[[endpoints]]\nname = "a"\nurl = "http://h:1"\nrole = "reference"\n'
            '[[endpoints]]\nname = "b"\nurl = "http://h:2"\nrole = "reference"\n',
            "only one endpoint can be the reference",
        ),
        ('[[endpoints]]\nname = "a"\nurl = "http://h:1"\nrole = "boss"\n', "role must be"),
        (
            '[[endpoints]]\nname = "a"\nurl = "http://h:1"\napi_key_env = "sk-abc123"\n',
            "NAME of an environment variable",
        ),
        ("[sampling]\ntemperature = -1\n", "temperature must be 0 or more"),
        ("[sampling]\ntemprature = 1\n", "unknown key(s) 'temprature'"),
        ("[sampling]\nmax_tokens = 1.5\n", "max_tokens must be a whole number"),
        ("[sampling]\ntop_p = 0\n", "top_p must be above 0"),
        ('[sampling]\nstop = "x"\n', "stop must be a list"),
        ("[ui]\ntelemetry_hz = 0\n", "telemetry_hz must be above 0"),
        ("sesions_dir = 'x'\n", "unknown key(s) 'sesions_dir'"),
    ],
)
def test_broken_config_is_one_clear_message_naming_the_file(
    tmp_path: Path, text: str, phrase: str
) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert phrase in str(err.value)
    assert str(p) in str(err.value)


def test_too_many_lanes(tmp_path: Path) -> None:
    text = "".join(f'[[endpoints]]\nname = "e{i}"\nurl = "http://h:{i + 1}"\n' for i in range(5))
    with pytest.raises(ConfigError, match="at most 4 lanes"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("spec", "name", "url"),
    [
        ("bf16=http://host:8000", "bf16", "http://host:8000"),
        ("awq=http://host:8001/v1", "awq", "http://host:8001"),
        ("awq=http://host:8001/v1/", "awq", "http://host:8001"),
        ("p=https://gw.example.com/team/llm/v1", "p", "https://gw.example.com/team/llm"),
        (" x = http://[::1]:9000 ", "x", "http://[::1]:9000"),
    ],
)
def test_endpoint_flags(spec: str, name: str, url: str) -> None:
    ep = parse_endpoint_flag(spec)
    assert (ep.name, ep.base_url) == (name, url)


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ("http://host:8000", "give the lane a name first"),
        ("bf16", "expected NAME=URL"),
        ("bf16=", "expected NAME=URL"),
        ("bf16=host:8000", "not an http:// or https://"),
        ("bf16=http://host:99999", "Port out of range"),
        ("bf16=http://host:8000/?x=1", "no ?query"),
        ("b f=http://host:8000", "lane name"),
    ],
)
def test_bad_endpoint_flags(spec: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match="--endpoint") as err:
        parse_endpoint_flag(spec)
    assert phrase in str(err.value)


def test_api_key_variable_for_a_flag_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTLAB_API_KEY", raising=False)
    monkeypatch.delenv("QUANTLAB_API_KEY_AWQ_4BIT", raising=False)
    assert parse_endpoint_flag("awq-4bit=http://h:1").api_key_env is None
    monkeypatch.setenv("QUANTLAB_API_KEY", "k")
    assert parse_endpoint_flag("awq-4bit=http://h:1").api_key_env == "QUANTLAB_API_KEY"
    monkeypatch.setenv("QUANTLAB_API_KEY_AWQ_4BIT", "k2")
    assert parse_endpoint_flag("awq-4bit=http://h:1").api_key_env == "QUANTLAB_API_KEY_AWQ_4BIT"


def test_flags_win_over_config_and_the_first_is_the_reference(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    with resolve_endpoints(args("q=http://h:2", "r=http://h:1"), cfg) as setup:
        assert setup.source == "flags"
        assert [(e.name, e.role) for e in setup.endpoints] == [
            ("q", "reference"),
            ("r", "candidate"),
        ]
    with pytest.raises(ConfigError, match="repeated: a"):
        resolve_endpoints(args("a=http://h:1", "a=http://h:2"), cfg)


def test_config_endpoints_are_used_without_flags_and_copied(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    setup = resolve_endpoints(args(), cfg)
    assert setup.source == "config" and [e.name for e in setup.endpoints] == ["bf16", "awq"]
    setup.endpoints[0].model = "changed by discovery"
    assert cfg.endpoints[0].model is None
    setup.close()


def test_demo_and_endpoint_flags_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--demo"):
        resolve_endpoints(args("a=http://h:1", demo=True), Config())


@pytest.mark.slow
def test_without_endpoints_the_real_local_pair_is_started_and_stopped() -> None:
    pytest.importorskip("quantlab.localpair", reason="the local pair is not built yet")
    with resolve_endpoints(args(), Config()) as setup:
        assert setup.source == "local pair"
        assert [e.role for e in setup.endpoints] == ["reference", "candidate"]
        urls = [e.base_url for e in setup.endpoints]
        for url in urls:
            assert httpx.get(url + "/health", timeout=10).status_code == 200
    for url in urls:  # close() stopped both servers
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)


# ------------------------------------------------------------------ client limits (9.7)


def test_client_limits_come_from_the_file_and_flags_win(tmp_path: Path) -> None:
    from quantlab.cli import build_parser
    from quantlab.config import client_limits
    from quantlab.limits import ClientLimits

    assert Config().client == ClientLimits()
    p = tmp_path / "quantlab.toml"
    p.write_text(
        "[client]\nconnect_timeout = 3\nstall_timeout = 20\ntotal_timeout = 300\n"
        "max_answer_bytes = 1048576\n"
    )
    cfg = load_config(p)
    assert cfg.client == ClientLimits(
        connect_s=3.0, stall_s=20.0, total_s=300.0, max_answer_bytes=1 << 20
    )
    args = build_parser().parse_args(["ask", "--stall-timeout", "5", "hi"])
    assert client_limits(args, cfg, total_flag="timeout").stall_s == 5.0
    assert client_limits(args, cfg).total_s == 300.0
    # ask's older --timeout is the total; --total-timeout wins over it.
    args = build_parser().parse_args(["ask", "--timeout", "40", "hi"])
    assert client_limits(args, cfg, total_flag="timeout").total_s == 40.0
    args = build_parser().parse_args(
        ["--total-timeout", "50", "run", "--timeout", "40", "--max-answer-bytes", "4096", "x"]
    )
    got = client_limits(args, cfg, total_flag="timeout")
    assert (got.total_s, got.max_answer_bytes) == (50.0, 4096)


@pytest.mark.parametrize(
    ("table", "phrase"),
    [
        ("stall_timeout = 0", "[client] stall_timeout must be above 0"),
        ("stall_timeout = 'x'", "[client] stall_timeout must be a number"),
        ("max_answer_bytes = 10", "[client] max_answer_bytes must be at least 1024"),
        ("max_answer_bytes = 1.5", "max_answer_bytes must be a whole number"),
        ("stall_timeout = 900", "could never fire"),
        ("read_timeout = 5", "unknown key(s) 'read_timeout' in [client]"),
    ],
)
def test_bad_client_limits_are_one_clear_message(tmp_path: Path, table: str, phrase: str) -> None:
    p = tmp_path / "quantlab.toml"
    p.write_text(f"[client]\n{table}\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert phrase in str(err.value) and str(p) in str(err.value)


def test_a_bad_limit_flag_is_exit_2_with_the_flags_name(capsys: pytest.CaptureFixture[str]) -> None:
    from quantlab.cli import main

    assert main(["ask", "--endpoint", "a=http://127.0.0.1:9", "--stall-timeout", "-1", "hi"]) == 2
    assert "--stall-timeout must be above 0" in capsys.readouterr().err
