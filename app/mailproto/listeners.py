"""The mail-protocol listeners `roster serve` runs: one per protocol whose listen address is set.

They answer from the app's in-memory LookupIndex; the policy listener also feeds vetted senders
to the mail-flow learner, which writes them in the background. Started and stopped by the app's
lifespan, so uvicorn's graceful shutdown closes them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.mailflow.learner import MailflowLearner
from app.directory.index_sync import IndexSync
from app.mailproto import server
from app.mailproto.policy import PolicyRequest
from app.mailproto.server import Learner, Listener, Resolver
from app.settings import Settings

logger = logging.getLogger(__name__)


def evidence_of(request: PolicyRequest) -> str:
    """How the sender was vouched for; only SASL and trusted networks reach the learner."""
    if request.sasl_username:
        return f"sasl:{request.sasl_username}"
    return f"network:{request.client_address}"


def policy_learner(learner: MailflowLearner) -> Learner:
    async def learn(sender: str, request: PolicyRequest) -> None:
        learner.observe(sender, evidence_of(request), instance=request.get("instance"))

    return learn


def _format(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class MailListeners:
    listeners: list[Listener] = field(default_factory=list)
    learner: MailflowLearner | None = None
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        settings: Settings,
        resolver: Resolver,
        sessionmaker: async_sessionmaker[AsyncSession],
        index_sync: IndexSync,
    ) -> MailListeners:
        """Bind every configured listener; a bad or busy address fails start-up loudly."""
        mail = cls()
        # The learner also reconciles contradictions for senders reported over the API, so it
        # runs even without a policy listener.
        mail.learner = MailflowLearner(
            sessionmaker,
            min_count=settings.learn_min_count,
            delimiter=settings.recipient_delimiter,
            on_change=index_sync.refresh_after_write,
        )
        mail._task = asyncio.create_task(mail.learner.run(), name="mailflow-learner")
        try:
            if settings.socketmap_listen:
                host, port = server.parse_listen(settings.socketmap_listen)
                mail.listeners.append(await server.start_socketmap_server(resolver, host, port))
            if settings.tcp_table_listen:
                host, port = server.parse_listen(settings.tcp_table_listen)
                mail.listeners.append(await server.start_tcp_table_server(resolver, host, port))
            if settings.policy_listen:
                host, port = server.parse_listen(settings.policy_listen)
                mail.listeners.append(
                    await server.start_policy_server(
                        resolver,
                        host,
                        port,
                        learner=policy_learner(mail.learner),
                        trusted_networks=settings.trusted_networks,
                    )
                )
        except BaseException:
            await mail.aclose()
            raise
        for listener in mail.listeners:
            logger.info(
                "roster %s listening: %s",
                listener.protocol,
                " ".join(_format(a) for a in listener.addresses),
            )
        if not mail.listeners:
            logger.info("roster mail listeners: none configured (set ROSTER_*_LISTEN)")
        return mail

    async def aclose(self) -> None:
        """Stop accepting, close connections, then write the sightings still queued."""
        await server.close_all(self.listeners)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.learner is not None:
            await self.learner.flush()
