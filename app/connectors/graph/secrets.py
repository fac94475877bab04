"""clientState secrets: generated per subscription, stored encrypted with ROSTER_SECRET_KEY.

A database dump alone then does not let anyone forge notifications that pass the clientState
check. The Fernet key is derived from the secret with HKDF/SHA-256, so any string of reasonable
length works as ROSTER_SECRET_KEY and the same secret can serve other purposes under other labels.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from app.errors import RosterError

_INFO = b"roster graph clientState v1"
CLIENT_STATE_BYTES = 48  # 64 URL-safe characters; Graph allows up to 128


class SecretKeyError(RosterError):
    """ROSTER_SECRET_KEY is missing, or cannot decrypt a stored value (it was changed)."""


def new_client_state() -> str:
    return secrets.token_urlsafe(CLIENT_STATE_BYTES)


class ClientStateCipher:
    def __init__(self, secret_key: SecretStr | str | None) -> None:
        raw = secret_key.get_secret_value() if isinstance(secret_key, SecretStr) else secret_key
        if not raw or len(raw) < 16:
            raise SecretKeyError(
                "ROSTER_SECRET_KEY (at least 16 characters) is needed to store Graph "
                "subscription secrets"
            )
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            raw.encode("utf-8")
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, client_state: str) -> str:
        return self._fernet.encrypt(client_state.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError) as exc:
            raise SecretKeyError(
                "a stored clientState cannot be decrypted: was ROSTER_SECRET_KEY changed?"
            ) from exc
