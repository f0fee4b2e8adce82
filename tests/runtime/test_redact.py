"""Redaction by value: status files stay valid JSON, secrets go, ordinary params stay."""
from __future__ import annotations

import copy
import json
import random
import string

import pytest

from trainer_runtime.core import redact as redact_module
from trainer_runtime.core.redact import MASK, is_secret_key, redact, redact_tree, register_secret

SIGNATURE = "a3f9c2e1b7d04c5e9f8a6b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0"
CREDENTIAL = "trainer%40proj.iam.gserviceaccount.com%2F20261125%2Fauto%2Fstorage%2Fgoog4_request"


@pytest.fixture
def isolated_secrets(monkeypatch):
    """Secrets registered by a test stay in that test."""
    monkeypatch.setattr(redact_module, "_secrets", set(redact_module._secrets))


@pytest.mark.parametrize("url, secrets", [
    (f"https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential={CREDENTIAL}"
     f"&X-Goog-Signature={SIGNATURE}", [SIGNATURE, CREDENTIAL]),
    (f"https://acct.blob.core.windows.net/c/o?sv=2022-11-02&sig={SIGNATURE}", [SIGNATURE]),
    (f"https://host/p?token={SIGNATURE}", [SIGNATURE]),
])
def test_a_signed_url_in_an_error_message_keeps_the_status_valid_json(url, secrets):
    status = {"stage": "failed", "exit_code": 15,
              "error": {"type": "StatusWriteError", "message": f"cannot write {url}", "hint": "check the bucket"}}
    text = json.dumps(redact_tree(status), indent=2)
    parsed = json.loads(text)
    assert not any(secret in text for secret in secrets)
    assert parsed["error"]["message"].startswith("cannot write https://")
    assert parsed["error"]["hint"] == "check the bucket" and parsed["exit_code"] == 15
    # The pattern itself stops at the closing quote too, so redacting serialised text (as
    # status.py did) no longer eats the `",` after the URL.
    assert json.loads(redact(json.dumps(status)))["exit_code"] == 15


@pytest.mark.parametrize("key", ["max_tokens", "tokenizer", "num_oov_tokens", "token_embedding_dim", "author",
                                 "authority", "auth", "hp.max_tokens", "custom_config.tokenizer", "sort_key",
                                 "signature_name", "exit_code", "max_token"])
def test_ordinary_params_are_not_secret_keys(key):
    assert not is_secret_key(key)


@pytest.mark.parametrize("key", ["api_token", "access_token", "auth_token", "password", "db_password",
                                 "client_secret", "secret", "api_key", "apikey", "private_key", "credentials",
                                 "credential", "mlflow_tracking_token", "MLFLOW_TRACKING_TOKEN", "id_token",
                                 "refresh_token", "bearer_token", "token", "passwd", "apiKey", "accessToken",
                                 "X-Goog-Credential", "custom_config.api_token"])
def test_secret_keys(key):
    assert is_secret_key(key)


def test_values_under_secret_keys_are_masked_whole_and_keys_kept():
    params = {"api_token": "plain-looking", "max_tokens": "512", "tokenizer": "wordpiece", "n": 3,
              "nested": [{"password": "hunter2"}, ("x", None, True, 1.5)]}
    before = copy.deepcopy(params)
    out = redact_tree(params)
    assert out == {"api_token": MASK, "max_tokens": "512", "tokenizer": "wordpiece", "n": 3,
                   "nested": [{"password": MASK}, ["x", None, True, 1.5]]}
    assert params == before, "the input is not modified"


@pytest.mark.parametrize("text", [
    "token/basic credentials",
    "uses MLflow's own token/basic credentials if they are set",
    "Bearer Authentication is required",
    "see basic usage/examples",
    "exit code=4, key=epoch, signature=serving_default",
])
def test_prose_is_left_alone(text):
    assert redact(text) == text


@pytest.mark.parametrize("text, secret", [
    ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "eyJhbGciOiJSUzI1NiJ9"),
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("header was bearer abcdef123456abcdef", "abcdef123456"),
    ("{'Authorization': 'Bearer short'}", "short"),
    ("GET https://maps.googleapis.com/api?key=AIzaSyA1b2C3d4E5f6&code=4/0Aab", "AIzaSyA1b2C3d4E5f6"),
    ("mlflow at https://bob:pw123456@host/x", "pw123456"),
])
def test_credential_shapes_are_masked(text, secret):
    out = redact(text)
    assert secret not in out and MASK in out


# --- property: any structure of strings holding secrets serialises, parses, and holds no secret ---

_ALPHABET = string.ascii_letters + string.digits + " \t\n\"'\\,;:&?=/{}[]%#@-_.é✓\u2028\x00"
_SECRET_ALPHABET = string.ascii_letters + string.digits + "\"'\\,;:&?={}[]/#%-_.é"


def _noise(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 20)))


def _token(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(10, 30))) + "9Z"


def _secret_piece(rng: random.Random, registered: list[str]) -> tuple[str, str]:
    """A string holding one secret, and that secret."""
    kind = rng.randrange(6)
    if kind == 0:
        secret = rng.choice(registered)
        return secret, secret
    secret = _token(rng)
    if kind == 1:
        return f"https://storage.googleapis.com/b/o?X-Goog-Date=1&X-Goog-Signature={secret}", secret
    if kind == 2:
        return f"https://h/p?{rng.choice(['sig', 'token', 'access_token', 'key', 'api_key'])}={secret}", secret
    if kind == 3:
        return f"{rng.choice(['Bearer', 'bearer', 'Basic'])} {secret}", secret
    if kind == 4:
        return f"https://user:{secret}@host/x", secret
    return f"Authorization: Bearer {secret}", secret


def _tree(rng: random.Random, registered: list[str], planted: list[str], depth: int = 0):
    if depth > 3 or rng.random() < 0.3:
        pieces = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.6:
                text, secret = _secret_piece(rng, registered)
                planted.append(secret)
                pieces.append(text)
            else:
                pieces.append(_noise(rng))
        return rng.choice([" ", ", ", "\n", "\", \"", "' "]).join(pieces)
    if rng.random() < 0.5:
        return [_tree(rng, registered, planted, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}{_noise(rng)[:3]}": _tree(rng, registered, planted, depth + 1) for i in range(rng.randint(0, 4))}


def test_any_redacted_tree_serialises_parses_and_holds_no_secret(isolated_secrets):
    rng = random.Random(20261125)
    registered = ["".join(rng.choice(_SECRET_ALPHABET) for _ in range(rng.randint(8, 40))) for _ in range(20)]
    registered += ['tok"en,with\\quotes', "sécret-ünïcode-1"]
    for secret in registered:
        register_secret(secret)
    checked = 0
    for _ in range(400):
        planted: list[str] = []
        tree = {"stage": "failed", "error": {"message": _tree(rng, registered, planted)},
                "detail": _tree(rng, registered, planted)}
        text = json.dumps(redact_tree(tree), indent=2)
        decoded = json.dumps(json.loads(text), ensure_ascii=False)
        for secret in planted:
            assert secret not in text and secret not in decoded, (secret, text)
            assert json.dumps(secret)[1:-1] not in text, (secret, text)
        checked += len(planted)
    assert checked > 1000
