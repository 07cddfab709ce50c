"""The API key format: `gw_<id>_<secret>`, and what is stored of it.

The id (12 hex characters) is public: it names the row to compare against.
The secret is `secrets.token_urlsafe(32)`, 256 random bits. Only the SHA-256
of the secret is stored. A plain fast hash is enough for a secret this long (a
slow password hash guards low-entropy passwords against guessing; 256 random
bits cannot be guessed), and it keeps each check to microseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "gw"
ID_BYTES = 6
SECRET_BYTES = 32
MAX_TOKEN_CHARS = 128
_TOKEN = re.compile(r"gw_([0-9a-f]{12})_([A-Za-z0-9_-]{32,100})")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
NAME_RULE = "1 to 64 characters: letters, digits and . _ @ -, starting with a letter or digit"


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly made key: `token` is shown once; only `key_id` and `secret_sha256` are stored."""

    token: str
    key_id: str
    secret_sha256: str


def new_token() -> NewToken:
    key_id = secrets.token_hex(ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return NewToken(f"{PREFIX}_{key_id}_{secret}", key_id, hash_secret(secret))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token; None for anything else."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    match = _TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def secret_matches(secret: str, secret_sha256: str) -> bool:
    """Constant-time comparison of the secret's hash with the stored one."""
    return hmac.compare_digest(hash_secret(secret), secret_sha256)


def valid_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None
