"""URL masking, secret scrubbing and JSON sanitising (pure functions, no database)."""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

__all__ = [
    "DEFAULT_STORAGE_URL",
    "default_storage_url",
    "mask_url",
    "resolve_storage_url",
    "scrub_secrets",
]

DEFAULT_STORAGE_URL = "sqlite:///zoneout-studies.db"
STORAGE_ENV = "ZONEOUT_STUDY_STORAGE"
MASK = "***"

# scheme://user:password@host  (used when SQLAlchemy cannot parse the URL)
_CREDENTIALS_RE = re.compile(r"(?P<head>[A-Za-z][\w+.\-]*://[^/\s:@]*:)(?P<pw>[^@\s]*)(?P<at>@)")
# ?password=...&token=...
_QUERY_SECRET_RE = re.compile(
    r"(?P<key>[?&;](?:[\w.\-]*(?:password|passwd|pwd|secret|token|api[_-]?key)))=(?P<val>[^&;#\s]*)",
    re.IGNORECASE,
)
_URLISH_RE = re.compile(r"^[A-Za-z][\w+.\-]*://")

# Keys whose value is a secret: the key's last word is one of these ...
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "credential", "credentials"}
)
# ... or its last two words form one of these ...
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key")}
)
# ... except NLP vocabulary tokens ("unk_token", "eos_token", ...), which are not secrets.
_VOCAB_TOKEN_WORDS = frozenset({"unk", "eos", "bos", "pad", "sep", "cls", "mask", "start", "end"})
# Keys whose string value is a URL that may carry a password.
_URL_KEYS = frozenset({"storage", "url", "uri", "dsn", "database", "database_url", "storage_url"})


def default_storage_url() -> str:
    """``$ZONEOUT_STUDY_STORAGE`` if set (and non-empty), else ``sqlite:///zoneout-studies.db``."""
    return resolve_storage_url(None)


def resolve_storage_url(given: str | None, spec_storage: str | None = None) -> str:
    """The one storage lookup: ``--storage``, then ``$ZONEOUT_STUDY_STORAGE``, then the spec's
    ``storage``, then ``sqlite:///zoneout-studies.db``."""
    return given or os.environ.get(STORAGE_ENV, "").strip() or spec_storage or DEFAULT_STORAGE_URL


def mask_url(url: str) -> str:
    """Return ``url`` with its password (and password-like query parameters) replaced by ``***``.

    Never raises: input SQLAlchemy cannot parse is masked with a regular expression instead.
    """
    try:
        text = url if isinstance(url, str) else str(url)
    except Exception:
        return "<unprintable url>"
    masked: str | None = _mask_ambiguous_userinfo(text)
    if masked is None:
        try:
            from sqlalchemy.engine import make_url

            masked = make_url(text).render_as_string(hide_password=True)
        except Exception:
            masked = None
    if masked is None:
        masked = _CREDENTIALS_RE.sub(lambda m: m["head"] + MASK + m["at"], text)
    return _QUERY_SECRET_RE.sub(lambda m: m["key"] + "=" + MASK, masked)


def _mask_ambiguous_userinfo(text: str) -> str | None:
    """A URL whose authority holds more than one ``@`` (a password with an unencoded ``@``):
    the password runs from the first ``:`` of the user info to the last ``@``, all of it masked.
    SQLAlchemy would end it at the first ``@`` and print the rest as the host. None otherwise."""
    match = re.match(r"(?P<scheme>[^:/?#]+://)(?P<authority>[^/?#]*)(?P<rest>.*)\Z", text, re.S)
    if match is None or match["authority"].count("@") < 2:
        return None
    userinfo, _, host = match["authority"].rpartition("@")
    user, colon, _ = userinfo.partition(":")
    masked_userinfo = f"{user}:{MASK}" if colon else MASK
    return f"{match['scheme']}{masked_userinfo}@{host}{match['rest']}"


def _key_words(key: str) -> list[str]:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", snake.lower()) if w]


def _is_secret_key(key: str) -> bool:
    words = _key_words(key)
    if not words:
        return False
    if words[-1] in _SECRET_WORDS:
        return not (words[-1] == "token" and len(words) > 1 and words[-2] in _VOCAB_TOKEN_WORDS)
    if len(words) >= 2 and (words[-2], words[-1]) in _SECRET_PAIRS:
        return True
    joined = "".join(words)
    return joined in {"apikey", "accesskey", "secretkey", "privatekey", "authtoken"}


def _is_url_key(key: str) -> bool:
    words = _key_words(key)
    return "_".join(words) in _URL_KEYS or (bool(words) and words[-1] in {"url", "uri", "dsn"})


def scrub_secrets(obj: Any) -> Any:
    """Return a copy of ``obj`` (nested dicts / lists / tuples) with secrets masked.

    - the value of any key named like a password, secret, token or API key becomes ``"***"``
      (vocabulary tokens such as ``unk_token`` are left alone);
    - the value of a ``storage`` / ``url`` / ``dsn`` key, and any string that looks like a URL
      with credentials, has its password masked with :func:`mask_url`.

    The input is never mutated. Non-container values are returned unchanged.
    """
    return _scrub(obj, key=None)


def _scrub(obj: Any, key: str | None) -> Any:
    if (
        key is not None
        and _is_secret_key(key)
        and obj is not None
        and not (isinstance(obj, str) and not obj)
    ):
        return MASK
    if isinstance(obj, Mapping):
        return {k: _scrub(v, k if isinstance(k, str) else str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, None) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_scrub(v, None) for v in obj)
    if isinstance(obj, str) and (
        (key is not None and _is_url_key(key)) or _URLISH_RE.match(obj) or "password=" in obj
    ):
        return mask_url(obj)
    return obj


def to_json_safe(obj: Any) -> Any:
    """Convert ``obj`` to strict-JSON-serialisable data.

    Non-finite floats become ``None``; numpy scalars / arrays become Python numbers / lists;
    tuples and sets become lists; datetimes become ISO strings; paths and other objects
    become strings; mapping keys become strings.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Decimal):
        return float(obj) if obj.is_finite() else None
    if isinstance(obj, Mapping):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_json_safe(v) for v in items]
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    # numpy / torch scalars and arrays, without importing them
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        try:
            return to_json_safe(tolist())
        except Exception:
            pass
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return to_json_safe(item())
        except Exception:
            pass
    return str(obj)
