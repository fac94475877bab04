"""The secret box with the real `cryptography`: keys, rotation, binding, old clientState tokens."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from app.connectors.graph.secrets import ClientStateCipher, new_client_state
from app.crypto import (
    CONNECTOR_SECRET,
    GRAPH_CLIENT_STATE,
    KEY_CHANGED,
    MISPLACED,
    Purpose,
    SecretBox,
    SecretKeyError,
    SecretMisplaced,
    SecretUndecryptable,
    associated_data,
)

OLD = "old-key-0123456789abcdef"
NEW = "new-key-fedcba9876543210"
PLAIN = "client-secret-Plaintext-42"
HERE = associated_data("connector_secrets", "conn-1", "https://login.example/tenant-a")
THERE = associated_data("connector_secrets", "conn-2", "https://login.example/tenant-a")


def box(key: str, purpose: Purpose = CONNECTOR_SECRET) -> SecretBox:
    return SecretBox(SecretStr(key), purpose=purpose)


def legacy_client_state_token(secret_key: str, client_state: str) -> str:
    """What the clientState cipher wrote before the secret box: no associated data."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"roster graph clientState v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key)).encrypt(client_state.encode()).decode()


def test_a_secret_round_trips_and_the_token_does_not_contain_it() -> None:
    token = box(OLD).encrypt(PLAIN, associated_data=HERE)
    assert PLAIN not in token
    assert box(OLD).decrypt(token, associated_data=HERE) == PLAIN
    assert box(OLD).encrypt(PLAIN, associated_data=HERE) != token  # fresh IV every time


def test_data_from_the_old_key_opens_with_new_then_old_and_rotate_moves_it_to_new() -> None:
    token = box(OLD).encrypt(PLAIN, associated_data=HERE)
    both = box(f"{NEW}, {OLD}")
    assert both.decrypt(token, associated_data=HERE) == PLAIN
    with pytest.raises(SecretUndecryptable):
        box(NEW).decrypt(token, associated_data=HERE)
    rotated = both.rotate(token, associated_data=HERE)
    assert box(NEW).decrypt(rotated, associated_data=HERE) == PLAIN
    with pytest.raises(SecretUndecryptable):
        box(OLD).decrypt(rotated, associated_data=HERE)


def test_new_secrets_are_written_with_the_first_key() -> None:
    token = box(f"{NEW},{OLD}").encrypt(PLAIN, associated_data=HERE)
    assert box(NEW).decrypt(token, associated_data=HERE) == PLAIN
    with pytest.raises(SecretUndecryptable):
        box(OLD).decrypt(token, associated_data=HERE)


def test_a_ciphertext_copied_to_another_row_does_not_open() -> None:
    token = box(OLD).encrypt(PLAIN, associated_data=HERE)
    with pytest.raises(SecretMisplaced) as caught:
        box(OLD).decrypt(token, associated_data=THERE)
    assert caught.value.message == MISPLACED
    assert "copied" in str(caught.value)
    assert PLAIN not in str(caught.value) and OLD not in str(caught.value)
    with pytest.raises(SecretMisplaced):
        box(f"{NEW},{OLD}").rotate(token, associated_data=THERE)


def test_a_changed_key_fails_with_a_message_naming_the_setting() -> None:
    token = box(OLD).encrypt(PLAIN, associated_data=HERE)
    with pytest.raises(SecretUndecryptable) as caught:
        box(NEW).decrypt(token, associated_data=HERE)
    assert str(caught.value) == KEY_CHANGED
    assert "ROSTER_SECRET_KEY" in caught.value.message
    assert caught.value.__cause__ is None
    assert isinstance(caught.value, SecretKeyError)


def test_a_token_from_one_purpose_does_not_open_under_another() -> None:
    token = box(OLD, GRAPH_CLIENT_STATE).encrypt(PLAIN, associated_data=HERE)
    with pytest.raises(SecretUndecryptable):
        box(OLD, CONNECTOR_SECRET).decrypt(token, associated_data=HERE)


@pytest.mark.parametrize("junk", ["", "not-a-token", "gAAAAA" + "A" * 80, "ünïcode"])
def test_a_garbled_token_is_a_clear_error(junk: str) -> None:
    with pytest.raises(SecretUndecryptable, match="ROSTER_SECRET_KEY"):
        box(OLD).decrypt(junk, associated_data=HERE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "ROSTER_SECRET_KEY is not set"),
        ("", "ROSTER_SECRET_KEY is not set"),
        ("short", "ROSTER_SECRET_KEY: the key is shorter than 16"),
        (f"{NEW},short-old", "ROSTER_SECRET_KEY: key 2 of 2 is shorter than 16"),
        (f"{NEW},,{OLD}", "ROSTER_SECRET_KEY: key 2 of 3 is shorter than 16"),
    ],
)
def test_a_missing_or_short_key_names_the_setting_and_not_the_key(
    value: str | None, expected: str
) -> None:
    with pytest.raises(SecretKeyError) as caught:
        SecretBox(value, purpose=CONNECTOR_SECRET)
    assert caught.value.message.startswith(expected)
    assert NEW not in caught.value.message and "short-old" not in caught.value.message


def test_no_key_or_secret_in_reprs() -> None:
    both = box(f"{NEW},{OLD}")
    cipher = ClientStateCipher(SecretStr(NEW))
    for text in (repr(both), str(both), repr(cipher), str(cipher)):
        assert NEW not in text and OLD not in text
    assert repr(both) == "SecretBox(purpose='connector-secret', keys=2)"


def test_associated_data_is_unambiguous() -> None:
    assert associated_data("a,b", "c") != associated_data("a", "b,c")
    assert associated_data("a", "bc") != associated_data("ab", "c")


def test_an_old_format_client_state_still_opens_and_rotation_binds_it() -> None:
    state = new_client_state()
    old_token = legacy_client_state_token(OLD, state)
    cipher = ClientStateCipher(SecretStr(OLD))
    assert cipher.decrypt(old_token, subscription_id="sub-1", connector_id="c-1") == state
    # Before the binding, any subscription's row could hold it; rotation ties it to its row.
    rotated = ClientStateCipher(f"{NEW},{OLD}").box.rotate(
        old_token, associated_data=associated_data("graph_subscriptions", "sub-1", "c-1")
    )
    new = ClientStateCipher(NEW)
    assert new.decrypt(rotated, subscription_id="sub-1", connector_id="c-1") == state
    with pytest.raises(SecretMisplaced):
        new.decrypt(rotated, subscription_id="sub-2", connector_id="c-1")
    with pytest.raises(SecretMisplaced):
        new.decrypt(rotated, subscription_id="sub-1", connector_id="c-2")


def test_new_client_states_are_bound_to_their_subscription() -> None:
    cipher = ClientStateCipher(SecretStr(OLD))
    state = new_client_state()
    token = cipher.encrypt(state, subscription_id="sub-1", connector_id="c-1")
    assert cipher.decrypt(token, subscription_id="sub-1", connector_id="c-1") == state
    with pytest.raises(SecretMisplaced):
        cipher.decrypt(token, subscription_id="sub-2", connector_id="c-1")


def test_purposes_without_old_tokens_refuse_unbound_ones() -> None:
    """Only the clientState purpose had tokens before binding; elsewhere unbound is foul play."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=CONNECTOR_SECRET.info).derive(
        OLD.encode()
    )
    unbound = Fernet(base64.urlsafe_b64encode(key)).encrypt(PLAIN.encode()).decode()
    with pytest.raises(SecretMisplaced):
        box(OLD).decrypt(unbound, associated_data=HERE)


def test_associated_data_is_required() -> None:
    with pytest.raises(ValueError, match="associated_data"):
        box(OLD).encrypt(PLAIN, associated_data=b"")
