"""clientState secrets: generated per subscription, stored encrypted with ROSTER_SECRET_KEY.

A database dump alone then does not let anyone forge notifications that pass the clientState
check. The encryption is the secret box's `graph-client-state` purpose (app/crypto.py), bound
to the subscription's own id and connector, both known when the row is written (after Graph's
201) and when it is read, so a token copied to another subscription's row does not open there.
Rows written before the binding (no associated data) still open; `roster secrets rotate`
rewrites them bound.
"""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from app.crypto import (
    GRAPH_CLIENT_STATE,
    SecretBox,
    SecretKeyError,
    SecretMisplaced,
    SecretUndecryptable,
    associated_data,
)

__all__ = [
    "CLIENT_STATE_BYTES",
    "ClientStateCipher",
    "SecretKeyError",
    "SecretMisplaced",
    "SecretUndecryptable",
    "client_state_binding",
    "new_client_state",
]

CLIENT_STATE_BYTES = 48  # 64 URL-safe characters; Graph allows up to 128
TABLE = "graph_subscriptions"


def new_client_state() -> str:
    return secrets.token_urlsafe(CLIENT_STATE_BYTES)


def client_state_binding(subscription_id: str, connector_id: str) -> bytes:
    """The associated data of one subscription's clientState."""
    return associated_data(TABLE, subscription_id, connector_id)


class ClientStateCipher:
    """The secret box for clientStates, addressed by subscription instead of raw bytes."""

    def __init__(self, secret_key: SecretStr | str | None) -> None:
        self.box = SecretBox(secret_key, purpose=GRAPH_CLIENT_STATE)

    def __repr__(self) -> str:
        return f"ClientStateCipher({self.box!r})"

    def encrypt(self, client_state: str, *, subscription_id: str, connector_id: str) -> str:
        return self.box.encrypt(
            client_state, associated_data=client_state_binding(subscription_id, connector_id)
        )

    def decrypt(self, token: str, *, subscription_id: str, connector_id: str) -> str:
        return self.box.decrypt(
            token, associated_data=client_state_binding(subscription_id, connector_id)
        )
