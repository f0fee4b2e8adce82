"""Keep secrets out of logs, status files and MLflow params/tags.

Known secret values (MLflow's token/password, every ID token we mint) are
registered here and replaced wherever they appear; credentials by shape are
masked by pattern as a second net: bearer/basic credentials, JWTs,
``user:pass@`` in URLs and secret query parameters (``?token=``,
``X-Goog-Signature=``, ...).

Structures (status files) are redacted value by value with ``redact_tree``,
never as serialised text, so a mask can never eat JSON syntax.
"""
from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from trainer_runtime.core import envvars

MASK = "***"

# Key names are judged word by word (split on _ - . and camelCase), so that
# ``max_tokens``, ``tokenizer`` or ``author`` are ordinary params.
_ALWAYS_SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "secret", "secrets", "credential",
                                  "credentials", "authorization"})
#: the last word of a key that names a token: ``token``, ``api_token``, ``id_token``...
_TOKEN_WORDS = frozenset({"token"})
#: ``max_token``, ``num_token``: a count of tokens, not a token
_COUNT_WORDS = frozenset({"max", "min", "num", "n", "count", "total"})
#: ``api_key``, ``private_key``...: a key is a secret only with one of these before it
_KEY_QUALIFIERS = frozenset({"api", "private", "access", "secret", "signing", "encryption", "client",
                             "master", "account"})
#: keys written as one word
_COMPOUNDS = frozenset({"apikey", "apitoken", "accesstoken", "authtoken", "idtoken", "refreshtoken",
                        "privatekey", "secretkey", "clientsecret", "accesskey"})
#: query parameters that carry a signature or credential in signed URLs (GCS, S3, Azure SAS)
#: (``X-Goog-Credential=`` and ``X-Amz-Credential=`` are secret keys already)
_URL_SECRET_PARAMS = frozenset({"sig", "signature", "x-goog-signature", "x-amz-signature",
                                "x-amz-security-token", "key", "code"})
#: ... of which these are ordinary words outside a query string ("exit code=4", "signature=serving_default")
_QUERY_ONLY = frozenset({"key", "code", "signature"})

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[_\-.\s/:]+")

_TOKEN_CHARS = r"[A-Za-z0-9._~+/=-]"
# A token-shaped credential after "Bearer"/"Basic": 8+ chars of the token alphabet.
_SCHEME = re.compile(rf"(?i)\b(bearer|basic)(\s+)({_TOKEN_CHARS}{{8,}})")
# After "Authorization:" whatever follows the scheme is a credential, whatever its shape.
_AUTH_HEADER = re.compile(r"""(?i)(authorization['"]?\s*[:=]\s*['"]?(?:bearer|basic)\s+)[^\s'",;)}\]]+""")
_WORDS = re.compile(r"[A-Z]?[a-z]{1,19}(?:[./_-][A-Z]?[a-z]{1,19})*")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_USERINFO = re.compile(r"""(?i)([a-z][a-z0-9+.-]*://)[^/\s:@'",]+:[^/\s@'",]+@""")
# name=value; the value ends at the first delimiter of a URL, a sentence or JSON.
_ASSIGNMENT = re.compile(r"""(?<![A-Za-z0-9_.-])([A-Za-z][A-Za-z0-9_.-]*)=([^&\s'",;<>(){}\[\]\\#|]+)""")

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this exact value from now on (ignored if empty or too short to be a secret)."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def register_env_secrets(env) -> None:
    """Mask MLflow's own credentials, which MLflow reads from the environment."""
    for name in (envvars.MLFLOW_TRACKING_TOKEN, envvars.MLFLOW_TRACKING_PASSWORD):
        register_secret(env.get(name))


def _scheme_credential(match: re.Match) -> str:
    # "basic credentials", "Bearer Authentication", "basic usage/examples": words, not a
    # credential. Tokens have digits or mixed case; a 20-letter word is rare enough to mask.
    if _WORDS.fullmatch(match.group(3)):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{MASK}"


def _assignment(match: re.Match) -> str:
    name, lower = match.group(1), match.group(1).lower()
    in_query = match.start() > 0 and match.string[match.start() - 1] in "?&;"
    if is_secret_key(name) or (lower in _URL_SECRET_PARAMS and (in_query or lower not in _QUERY_ONLY)):
        return f"{name}={MASK}"
    return match.group(0)


def redact(text: str) -> str:
    """``text`` with registered secrets and credential-shaped substrings replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
    text = _SCHEME.sub(_scheme_credential, text)
    text = _JWT.sub(MASK, text)
    text = _USERINFO.sub(r"\1" + MASK + "@", text)
    return _ASSIGNMENT.sub(_assignment, text)


def redact_tree(obj: Any) -> Any:
    """A redacted deep copy of a JSON-able structure, ready for ``json.dumps``.

    Every string value goes through ``redact``; a string value under a key that
    names a secret (``is_secret_key``) is masked whole. Keys are kept as they are.
    Tuples become lists; anything else that JSON cannot hold becomes its redacted ``str``.
    """
    if isinstance(obj, str):
        return redact(obj)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, dict):
        return {key: (MASK if isinstance(value, str) and value and isinstance(key, str)
                      and is_secret_key(key) else redact_tree(value))
                for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_tree(item) for item in obj]
    return redact(str(obj))


def key_words(key: str) -> list[str]:
    """The lower-case words of a key: ``X-Goog-Credential`` -> ``['x', 'goog', 'credential']``."""
    return [w for w in _SEPARATORS.split(_CAMEL.sub("_", key).lower()) if w]


def is_secret_key(key: str) -> bool:
    """Whether a config/param key names something that must never be logged.

    Word-aware: ``api_token``, ``db_password``, ``client_secret``, ``apiKey`` are
    secrets; ``max_tokens``, ``tokenizer``, ``token_embedding_dim``, ``author`` are not.
    """
    words = key_words(key)
    if not words:
        return False
    if any(w in _ALWAYS_SECRET_WORDS or w in _COMPOUNDS for w in words):
        return True
    last = words[-1]
    if last in _TOKEN_WORDS:
        return len(words) == 1 or words[-2] not in _COUNT_WORDS
    return any(w == "key" and prev in _KEY_QUALIFIERS for prev, w in zip(words, words[1:]))


def strip_credentials(uri: str) -> str:
    """The URI without user info, query or fragment: safe to log and record."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
