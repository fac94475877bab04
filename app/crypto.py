"""The secret box: secrets at rest, encrypted with keys from ROSTER_SECRET_KEY.

ROSTER_SECRET_KEY holds one or more keys, comma-separated, newest first. For each purpose (a
Graph clientState, a connector secret) a Fernet key is derived from every key with HKDF/SHA-256,
the purpose's label as `info`, so one key list serves every purpose without one ciphertext ever
opening under another purpose. `MultiFernet` decrypts with any key and encrypts with the first,
so a new key goes in front, `roster secrets rotate` re-encrypts, and then the old key can go.

Fernet has no associated data, so the box binds it itself: the encrypted payload is a marker,
SHA-256 of the associated data, then the plaintext; decrypt compares the digest with
`hmac.compare_digest`. A ciphertext copied to another row (another associated data) therefore
does not open there. We chose this over deriving a key per record because (1) a wrong key and a
wrong record give distinct errors (Fernet opens, the digest differs), so the operator learns
whether ROSTER_SECRET_KEY changed or a row was tampered with; and (2) `MultiFernet.rotate` keeps
the payload, so rotation needs no per-record key derivation. The digest sits inside Fernet's
authenticated encryption, so it cannot be changed without the key.

Tokens written before associated data existed (the Graph clientState, "unbound") are accepted
on read only by purposes that say so; rotation rewrites them in the bound format.
No key and no plaintext appears in any repr, str or error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from app.errors import RosterError

SETTING = "ROSTER_SECRET_KEY"
MIN_KEY_LENGTH = 16
KEY_CHANGED = "cannot decrypt its secrets: was ROSTER_SECRET_KEY changed?"
MISPLACED = (
    "a stored secret does not belong to this record or destination (was it copied from "
    "another row?): give the secret again"
)
_BOUND = b"\x00rsb1"  # never in an unbound payload: those are printable text
_DIGEST = hashlib.sha256().digest_size


class SecretKeyError(RosterError):
    """ROSTER_SECRET_KEY is missing or malformed, or cannot open a stored secret."""


class SecretUndecryptable(SecretKeyError):
    """No key in ROSTER_SECRET_KEY opens the token: the key list changed (or the token is junk)."""


class SecretMisplaced(SecretKeyError):
    """The token opens but was sealed for other associated data (another row or destination)."""


@dataclass(frozen=True, slots=True)
class Purpose:
    """What a secret is for. `info` feeds HKDF: never change it while rows hold its tokens."""

    name: str
    info: bytes
    accepts_unbound: bool = False  # reads tokens written before associated data existed


# The label is the one the clientState cipher always used, so stored rows keep opening.
GRAPH_CLIENT_STATE = Purpose(
    "graph-client-state", b"roster graph clientState v1", accepts_unbound=True
)
CONNECTOR_SECRET = Purpose("connector-secret", b"roster connector-secret v1")


def associated_data(*parts: str) -> bytes:
    """An unambiguous encoding of what a secret is bound to (table, row id, destination...)."""
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_keys(secret_key: SecretStr | str | None) -> list[str]:
    """ROSTER_SECRET_KEY → its keys, newest first; a clear error naming the setting otherwise."""
    raw = secret_key.get_secret_value() if isinstance(secret_key, SecretStr) else secret_key
    if raw is None or not raw.strip():
        raise SecretKeyError(
            f"{SETTING} is not set: it is needed to store secrets (one or more keys of at least "
            f"{MIN_KEY_LENGTH} characters, comma-separated, newest first)"
        )
    keys = [part.strip() for part in raw.split(",")]
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_LENGTH:
            where = f"key {position} of {len(keys)}" if len(keys) > 1 else "the key"
            raise SecretKeyError(
                f"{SETTING}: {where} is shorter than {MIN_KEY_LENGTH} characters (keys are "
                "comma-separated, newest first; a key cannot contain a comma)"
            )
    return keys


def _fernet(key: str, purpose: Purpose) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.info).derive(
        key.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypts and decrypts one purpose's secrets, each bound to its associated data."""

    __slots__ = ("_fernet", "key_count", "purpose")

    def __init__(self, secret_key: SecretStr | str | None, *, purpose: Purpose) -> None:
        keys = parse_keys(secret_key)
        self.purpose = purpose
        self.key_count = len(keys)
        self._fernet = MultiFernet([_fernet(key, purpose) for key in keys])

    def __repr__(self) -> str:
        return f"SecretBox(purpose={self.purpose.name!r}, keys={self.key_count})"

    def encrypt(self, plaintext: str, *, associated_data: bytes) -> str:
        payload = _BOUND + _digest(associated_data) + plaintext.encode("utf-8")
        return self._fernet.encrypt(payload).decode("ascii")

    def decrypt(self, token: str, *, associated_data: bytes) -> str:
        payload = self._open(token)
        if payload.startswith(_BOUND):
            self._check_binding(payload, associated_data)
            body = payload[len(_BOUND) + _DIGEST :]
        elif self.purpose.accepts_unbound:
            body = payload
        else:
            raise SecretMisplaced(MISPLACED)
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUndecryptable(KEY_CHANGED) from None

    def rotate(self, token: str, *, associated_data: bytes) -> str:
        """The same secret under the newest key; an unbound token comes back bound."""
        payload = self._open(token)
        if payload.startswith(_BOUND):
            self._check_binding(payload, associated_data)
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        return self.encrypt(self.decrypt(token, associated_data=associated_data),
                            associated_data=associated_data)  # fmt: skip

    def _open(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError, TypeError):
            # Not chained: the cause adds nothing, and nothing of the token leaves here.
            raise SecretUndecryptable(KEY_CHANGED) from None

    @staticmethod
    def _check_binding(payload: bytes, associated_data: bytes) -> None:
        stored = payload[len(_BOUND) : len(_BOUND) + _DIGEST]
        if len(stored) != _DIGEST or not hmac.compare_digest(stored, _digest(associated_data)):
            raise SecretMisplaced(MISPLACED)


def _digest(associated_data: bytes) -> bytes:
    if not associated_data:
        raise ValueError("associated_data must name what the secret belongs to")
    return hashlib.sha256(associated_data).digest()
