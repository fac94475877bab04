"""The simulator's subscriptions over real HTTP both ways: Graph CRUD, handshake, delivery."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from app.simulator.graph import RunningSimulator
from app.simulator.graph.subscriptions import SubscriptionService, subscription_service


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records what Graph (the simulator) sends."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    fail_next: int = 0
    echo: Callable[[str], str] = lambda token: token

    def items(self, path: str = "/notify") -> list[dict[str, Any]]:
        return [
            item for p, b in zip(self.paths, self.bodies, strict=True) if p == path
            for item in b["value"]
        ]  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            rec = box[0]
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            token = parse_qs(parts.query).get("validationToken")
            if token:
                rec.tokens.append(token[0])
                answer = rec.echo(token[0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            if rec.fail_next > 0:
                rec.fail_next -= 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            rec.paths.append(parts.path)
            rec.bodies.append(orjson.loads(body))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box[0]
    server.shutdown()
    server.server_close()


@pytest.fixture
def service(sim: RunningSimulator) -> Iterator[SubscriptionService]:
    svc = subscription_service(sim.state)
    svc.backoff = 0.05
    yield svc
    svc.stop()


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def subscribe(http: httpx.Client, receiver: Receiver, **extra: Any) -> httpx.Response:
    body = {
        "changeType": "updated,deleted",
        "resource": "/users",
        "notificationUrl": f"{receiver.url}/notify",
        "lifecycleNotificationUrl": f"{receiver.url}/lifecycle",
        "clientState": "s3cret",
        "expirationDateTime": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
    } | extra
    return http.post("/v1.0/subscriptions", json=body)


def test_creation_validates_both_urls_with_a_token_echo(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService
) -> None:
    answer = subscribe(http, receiver)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["clientState"] == "s3cret"
    assert body["changeType"] == "updated,deleted"
    assert len(receiver.tokens) == 2  # notificationUrl and lifecycleNotificationUrl
    assert all(t.startswith("Validation: ") and "<&>" in t for t in receiver.tokens)
    listed = http.get("/v1.0/subscriptions").json()["value"]
    assert [s["id"] for s in listed] == [body["id"]]
    assert listed[0]["clientState"] is None  # Graph does not hand the secret back


def test_a_wrong_echo_means_no_subscription(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService
) -> None:
    receiver.echo = lambda token: token.replace(" ", "+")  # an encoded echo fails, as in Graph
    answer = subscribe(http, receiver)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ValidationError"
    assert service.all() == []


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"changeType": "created"}, "InvalidRequest"),
        ({"resource": "/contacts"}, "InvalidRequest"),
        ({"notificationUrl": "http://roster.example.com/notify"}, "InvalidRequest"),
        ({"expirationDateTime": (datetime.now(UTC) + timedelta(days=30)).isoformat()},
         "InvalidRequest"),
    ],
)  # fmt: skip
def test_creation_refuses_what_graph_refuses(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService,
    extra: dict[str, Any], code: str,
) -> None:  # fmt: skip
    answer = subscribe(http, receiver, **extra)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code


def test_short_lifetimes_are_raised_to_45_minutes(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService
) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    body = subscribe(http, receiver, expirationDateTime=soon).json()
    expires = datetime.fromisoformat(body["expirationDateTime"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) > timedelta(minutes=44)


def test_changes_are_delivered_in_batches_with_ids_only(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService, sim: RunningSimulator
) -> None:
    sub = subscribe(http, receiver).json()
    created = [sim.state.add_user(mail=f"batch{i}@contoso.com") for i in range(40)]
    sim.state.delete(created[0]["id"], hard=True)
    wait_for(lambda: len(receiver.items()) == 41)
    items = receiver.items()
    assert len(receiver.bodies) < 10  # batched, not one POST per change
    first = items[0]
    assert first["subscriptionId"] == sub["id"]
    assert first["clientState"] == "s3cret"
    assert first["changeType"] == "updated"
    assert first["resource"] == f"Users/{created[0]['id']}"
    assert first["resourceData"]["@odata.type"] == "#Microsoft.Graph.User"
    assert items[-1]["changeType"] == "deleted"
    assert not any(i.get("resource", "").startswith("Groups/") for i in items)


def test_failed_deliveries_are_retried_with_backoff(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService, sim: RunningSimulator
) -> None:
    subscribe(http, receiver)
    receiver.fail_next = 2
    sim.state.add_user(mail="retry@contoso.com")
    wait_for(lambda: len(receiver.items()) == 1)
    assert service.stats.failed_attempts == 2
    assert service.stats.lost == 0


@pytest.mark.parametrize("release", ["reauthorize", "renew"])
def test_reauthorization_required_holds_changes_until_reauthorized_or_renewed(
    http: httpx.Client,
    receiver: Receiver,
    service: SubscriptionService,
    sim: RunningSimulator,
    release: str,
) -> None:
    sub = subscribe(http, receiver).json()
    # A second subscription to the same resource, never held: once it has the change, the
    # simulator has handled it, so the held subscription's silence is not mere slowness.
    witness = subscribe(
        http,
        receiver,
        notificationUrl=f"{receiver.url}/witness",
        lifecycleNotificationUrl=f"{receiver.url}/witness-lifecycle",
    ).json()
    service.send_lifecycle(sub["id"], "reauthorizationRequired")
    wait_for(lambda: len(receiver.items("/lifecycle")) == 1)
    event = receiver.items("/lifecycle")[0]
    assert event["lifecycleEvent"] == "reauthorizationRequired"
    assert (event["subscriptionId"], event["clientState"]) == (sub["id"], "s3cret")
    assert service.get(sub["id"]).needs_reauthorization

    held = sim.state.add_user(mail="held@contoso.com")
    wait_for(lambda: len(receiver.items("/witness")) == 1)
    assert receiver.items("/witness")[0]["subscriptionId"] == witness["id"]
    assert receiver.items() == []  # held back, not lost:
    assert service.pending() == 1
    assert service.stats.lost == 0

    if release == "reauthorize":
        answer = http.post(f"/v1.0/subscriptions/{sub['id']}/reauthorize")
        assert answer.status_code == 204
    else:
        later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        answer = http.patch(f"/v1.0/subscriptions/{sub['id']}", json={"expirationDateTime": later})
        assert answer.status_code == 200
    wait_for(lambda: len(receiver.items()) == 1)
    delivered = receiver.items()[0]
    assert (delivered["subscriptionId"], delivered["resource"]) == (
        sub["id"],
        f"Users/{held['id']}",
    )
    assert not service.get(sub["id"]).needs_reauthorization
    assert service.pending() == 0


def test_subscription_removed_and_missed_events(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService, sim: RunningSimulator
) -> None:
    sub = subscribe(http, receiver).json()
    service.lose_next(1)
    sim.state.add_user(mail="lost@contoso.com")
    service.send_lifecycle(sub["id"], "missed")
    service.send_lifecycle(sub["id"], "subscriptionRemoved")
    wait_for(lambda: len(receiver.items("/lifecycle")) == 2)
    assert [e["lifecycleEvent"] for e in receiver.items("/lifecycle")] == [
        "missed",
        "subscriptionRemoved",
    ]
    assert receiver.items() == []
    assert http.get(f"/v1.0/subscriptions/{sub['id']}").status_code == 404


def test_renewal_delete_and_reauthorize_follow_graph(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService
) -> None:
    sub = subscribe(http, receiver).json()
    later = (datetime.now(UTC) + timedelta(minutes=41_000)).isoformat()
    renewed = http.patch(f"/v1.0/subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert renewed.status_code == 200
    assert renewed.json()["expirationDateTime"].startswith(later[:16])
    assert http.delete(f"/v1.0/subscriptions/{sub['id']}").status_code == 204
    gone = http.patch(f"/v1.0/subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert gone.status_code == 404
    assert http.post(f"/v1.0/subscriptions/{sub['id']}/reauthorize").status_code == 404


def test_expired_subscriptions_disappear(
    http: httpx.Client, receiver: Receiver, service: SubscriptionService
) -> None:
    sub = subscribe(http, receiver).json()
    service.advance(timedelta(days=3))
    assert http.get(f"/v1.0/subscriptions/{sub['id']}").status_code == 404


def test_subscription_routes_need_a_token(sim: RunningSimulator) -> None:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(sim.ca_file))) as anonymous:
        assert anonymous.get(f"{sim.base_url}/subscriptions").status_code == 401


def test_forged_notifications_are_posted_as_given(
    receiver: Receiver, service: SubscriptionService, sim: RunningSimulator
) -> None:
    assert service.forge(f"{receiver.url}/notify", subscription_id="nope") == 202
    assert receiver.items()[0]["clientState"] == "forged"
    control = httpx.post(
        f"{sim.origin}/_control/subscriptions/forge",
        json={"url": f"{receiver.url}/notify", "clientState": "x"},
        verify=ssl.create_default_context(cafile=str(sim.ca_file)),
    )
    assert control.json() == {"status": 202}
