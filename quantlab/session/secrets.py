"""Keep secrets out of session files.

An Endpoint only holds the *name* of the variable that holds its API key, so a key has no
business in a session. These guards make sure one cannot slip in anyway: secret-looking keys
are dropped from free-form dicts (meta, machine facts, endpoint dicts), credentials are cut
out of URLs, and every byte string about to be written is scanned for the actual values of
the key variables, which are replaced by ``[redacted]`` wherever they appear.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

REDACTED = "[redacted]"

#: Dict keys (lower case, "-" read as "_") whose values are secrets and are never written.
SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "x_api_key",
        "authorization",
        "proxy_authorization",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "access_token",
        "refresh_token",
        "auth_token",
        "api_token",
        "bearer",
        "cookie",
        "set_cookie",
        "hf_token",
    }
)
_SECRET_SUFFIXES = ("_api_key", "_apikey", "_secret", "_password")

#: Variables that commonly hold keys: their values are redacted even when no endpoint names
#: them (a prompt pasted from a shell history, an error message echoing a header…).
COMMON_KEY_VARS = (
    "OPENAI_API_KEY",
    "VLLM_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "ANTHROPIC_API_KEY",
)

#: Values shorter than this are not treated as secrets ("EMPTY", "none"…): redacting them
#: would mangle ordinary text.
MIN_SECRET_LEN = 8


def is_secret_key(key: object) -> bool:
    """True for a dict key that names a secret (``api_key_env`` names a variable: kept)."""
    if not isinstance(key, str):
        return False
    k = key.lower().replace("-", "_")
    return k in SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def scrub(obj: Any) -> Any:
    """A copy of ``obj`` without secret-named keys at any depth, and URLs without
    credentials. Used on the free-form parts of a session (small dicts)."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if not is_secret_key(k)}
    if isinstance(obj, list | tuple):
        return [scrub(v) for v in obj]
    if isinstance(obj, str) and "@" in obj and "://" in obj:
        return strip_url_credentials(obj)
    return obj


def strip_url_credentials(url: str) -> str:
    """``http://user:key@host:8000/v1`` -> ``http://host:8000/v1``; other text unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.netloc or "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def secret_values(env_names: Iterable[str | None]) -> list[bytes]:
    """The JSON-encoded forms of the values of ``env_names`` (and the common key
    variables) that are long enough to be secrets, longest first."""
    found: set[bytes] = set()
    for name in (*env_names, *COMMON_KEY_VARS):
        value = os.environ.get(name) if name else None
        if not value or len(value) < MIN_SECRET_LEN:
            continue
        found.add(orjson.dumps(value)[1:-1])  # as it appears inside a JSON string
        found.add(value.encode("utf-8", "surrogatepass"))
    return sorted(found, key=len, reverse=True)


def redact(data: bytes, secrets: list[bytes]) -> bytes:
    """``data`` (one JSON document or line) with every secret value replaced.

    The common case, no secret present, costs one ``bytes.find`` per secret. When one is
    found the document is rebuilt structurally (replacing inside strings and keys), so the
    result is always valid JSON; a secret that survives that (inside a number) is refused.
    """
    if not secrets or not any(s in data for s in secrets):
        return data
    strings = [s.decode("utf-8", "replace") for s in secrets]
    trailing_newline = data.endswith(b"\n")
    clean = orjson.dumps(_replace_strings(orjson.loads(data), strings))
    if any(s in clean for s in secrets):
        raise ValueError("a secret value appears outside any string; refusing to write it")
    return clean + (b"\n" if trailing_newline else b"")


def _replace_strings(obj: Any, secrets: list[str]) -> Any:
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, REDACTED)
        return obj
    if isinstance(obj, dict):
        return {_replace_strings(k, secrets): _replace_strings(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_strings(v, secrets) for v in obj]
    return obj
