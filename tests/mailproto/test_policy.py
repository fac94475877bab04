"""Policy delegation blocks and actions as bytes.

SMTPD_POLICY_README; what Postfix sends: docs/outside-behaviour.md §8.
"""

from __future__ import annotations

import pytest

from app.directory.verdicts import LookupResult, Reason, Verdict
from app.mailproto import policy
from app.mailproto.policy import PolicyDecoder, PolicyError, PolicyRequest, parse_request

# What Postfix 3.7 sends at RCPT (docs/outside-behaviour.md §8), in its order.
POSTFIX_BLOCK = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"client_address=127.0.0.1\nclient_name=unknown\nclient_port=60056\n"
    b"reverse_client_name=unknown\nserver_address=127.0.0.1\nserver_port=54461\n"
    b"helo_name=probe.invalid\nsender=probe@probe.invalid\nrecipient=Bob@Example.COM\n"
    b"recipient_count=0\nqueue_id=\ninstance=4623.6b09400e.607bd.0\nsize=0\netrn_domain=\n"
    b"stress=\nsasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n"
    b"ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
    b"encryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n"
)


def request(**attrs: str) -> PolicyRequest:
    return PolicyRequest({"request": "smtpd_access_policy", **attrs})


def test_postfix_block_parses_with_recipient_as_typed() -> None:
    [req] = PolicyDecoder().feed(POSTFIX_BLOCK)
    assert req.protocol_state == "RCPT"
    assert req.recipient == "Bob@Example.COM"
    assert req.sasl_username == ""
    assert req.get("queue_id") == ""
    assert policy.is_judged(req)


def test_decoder_handles_split_and_back_to_back_blocks() -> None:
    decoder = PolicyDecoder()
    stream = POSTFIX_BLOCK * 2
    got: list[PolicyRequest] = []
    for i in range(0, len(stream), 7):
        got += decoder.feed(stream[i : i + 7])
    assert [r.recipient for r in got] == ["Bob@Example.COM", "Bob@Example.COM"]


def test_crlf_blocks_are_tolerated() -> None:
    [req] = PolicyDecoder().feed(b"protocol_state=RCPT\r\nrecipient=a@b\r\n\r\n")
    assert req.recipient == "a@b"


def test_value_may_contain_equals_and_invalid_utf8_is_replaced() -> None:
    req = parse_request(b"ccert_subject=CN=x\nrecipient=\xff@example.com")
    assert req.get("ccert_subject") == "CN=x"
    assert req.recipient == "\ufffd@example.com"


@pytest.mark.parametrize("data", [b"\n", b"no equals sign\n\n", b"=value\n\n", b"a=b\n\r\n\n"])
def test_malformed_blocks_are_errors(data: bytes) -> None:
    with pytest.raises(PolicyError):
        PolicyDecoder().feed(data)


def test_decoder_caps_an_unterminated_block() -> None:
    decoder = PolicyDecoder(max_request=100)
    with pytest.raises(PolicyError, match="longer than 100"):
        decoder.feed(b"a=" + b"x" * 200)


def test_only_rcpt_is_judged() -> None:
    assert not policy.is_judged(request(protocol_state="DATA", recipient="a@b"))
    assert not policy.is_judged(request(protocol_state="RCPT", recipient=""))


@pytest.mark.parametrize(
    ("result", "action"),
    [
        (LookupResult("a@x", Verdict.ACCEPT), "DUNNO"),
        (LookupResult("a@x", Verdict.REJECT, Reason.UNKNOWN_RECIPIENT), "550 5.1.1 User unknown"),
        (LookupResult("a@x", Verdict.REJECT, Reason.DISABLED), "550 5.1.1 User unknown"),
        (LookupResult("a@x", Verdict.REJECT, Reason.DOMAIN_NOT_ACCEPTED), "DUNNO"),
        (
            LookupResult("a@x", Verdict.REJECT, Reason.MALFORMED),
            "550 5.1.3 Bad recipient address syntax",
        ),
        (
            LookupResult("a@x", Verdict.TEMPFAIL, Reason.NOT_READY),
            "451 4.3.0 Temporary lookup failure (roster not_ready)",
        ),
    ],
)
def test_actions(result: LookupResult, action: str) -> None:
    assert policy.action_for(result) == action


def test_reply_bytes() -> None:
    assert policy.format_reply("DUNNO") == b"action=DUNNO\n\n"
    assert policy.format_reply("550 5.1.1 User unknown") == b"action=550 5.1.1 User unknown\n\n"


def test_trusted_networks_cover_ipv4_ipv6_and_mapped_addresses() -> None:
    nets = policy.parse_networks(["10.0.0.0/8", "::1", " 192.0.2.7/24 ", ""])
    assert policy.is_trusted("10.1.2.3", nets)
    assert policy.is_trusted("::1", nets)
    assert policy.is_trusted("::ffff:10.9.9.9", nets)
    assert policy.is_trusted("192.0.2.200", nets)
    assert not policy.is_trusted("203.0.113.1", nets)
    assert not policy.is_trusted("unknown", nets)


def test_only_authenticated_or_trusted_senders_are_learned() -> None:
    nets = policy.parse_networks(["10.0.0.0/8"])
    base = {"protocol_state": "RCPT", "sender": "carol@example.com"}
    assert policy.learnable_sender(request(**base, client_address="203.0.113.1"), nets) is None
    assert (
        policy.learnable_sender(request(**base, sasl_username="carol"), nets) == "carol@example.com"
    )
    trusted = request(**base, client_address="10.0.0.5")
    assert policy.learnable_sender(trusted, nets) == "carol@example.com"
    eom = request(**{**base, "protocol_state": "END-OF-MESSAGE"}, sasl_username="c")
    assert policy.learnable_sender(eom, nets) == "carol@example.com"
    data = request(**{**base, "protocol_state": "DATA"}, sasl_username="c")
    assert policy.learnable_sender(data, nets) is None
    bounce = request(protocol_state="RCPT", sender="", sasl_username="c")
    assert policy.learnable_sender(bounce, nets) is None
