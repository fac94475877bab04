"""`roster sync`: rounds straight on the database, one configured directory after another.

A directory whose lease another live process holds is waited for after the others have run,
saying who holds it and until when (a spinner on a terminal, plain lines otherwise); with
`--no-wait` it is skipped and the command exits 75 (EX_TEMPFAIL). SIGTERM or SIGINT ends the
running round at a page boundary (recorded as interrupted, lease released; the next run
resumes there) and the command exits 128 + the signal number. A paused connector is not run
(said on stderr; the command then exits 75 as for a busy one). Its rounds are `manual` ones
in the connector's run history.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.base import Source
from app.connectors.runner import (
    ConnectorBusy,
    ConnectorPaused,
    CycleReport,
    RunnerOptions,
    run_cycle,
)
from app.connectors.runs import Trigger
from app.errors import RosterError
from app.settings import Settings

T = TypeVar("T")

EXIT_TEMPFAIL = 75  # EX_TEMPFAIL from sysexits.h
LEASE_POLL = 2.0  # seconds between tries for a busy connector's lease
PLAIN_REPEAT = 30.0  # off a terminal, repeat an unchanged "waiting" line this often
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(slots=True)
class Job:
    name: str
    connector_id: str
    source: Source


@dataclass(slots=True)
class Outcome:
    """What became of one connector: a report, busy (--no-wait), or stopped by a signal."""

    name: str
    report: CycleReport | None = None
    busy: ConnectorBusy | None = None
    stopped: bool = False
    started: bool = False
    paused: bool = False
    pages: int = 0


class Stopper:
    """Turns SIGTERM and SIGINT into the cancellation of the work under way (run_cycle then
    ends its round at a page boundary)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._task: asyncio.Future[Any] | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop, sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)

    def stop(self, sig: int) -> None:
        self.signal = self.signal or sig
        if self._task is not None:
            self._task.cancel()

    async def run(self, work: Coroutine[Any, Any, T]) -> tuple[bool, T | None]:
        """Run `work` so a stop can cancel it; (False, None) when stopped."""
        if self.signal is not None:
            work.close()
            return False, None
        self._task = task = asyncio.ensure_future(work)
        try:
            return True, await task
        except asyncio.CancelledError:
            if self.signal is None or not task.cancelled():
                raise  # cancelled from outside, not by a stop signal
            return False, None
        finally:
            self._task = None


class View:
    """Progress on stderr: a spinner per connector on a terminal, plain lines otherwise."""

    def __init__(self, progress: Progress, err: Console) -> None:
        self.progress = progress
        self.err = err
        self.tasks: dict[str, TaskID] = {}
        self._said: dict[str, tuple[str | None, float]] = {}

    def task(self, name: str) -> TaskID:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(f"{name}: starting", total=None)
        return self.tasks[name]

    def page(self, name: str, stream: str, pages: int, objects: int) -> None:
        self.progress.update(
            self.task(name), description=f"{name}: {stream} page {pages}, {objects} objects"
        )

    def waiting(self, name: str, busy: ConnectorBusy) -> None:
        holder = busy.holder or "?"
        if self.err.is_terminal:  # short enough for the spinner's line
            until = busy.until.astimezone(UTC).strftime("%H:%M:%S UTC") if busy.until else "?"
            self.progress.update(
                self.task(name), description=f"{name}: waiting for {holder} (lease until {until})"
            )
            return
        line = f"{name}: waiting for the lease held by {holder} until {_at(busy.until)}"
        said, said_at = self._said.get(name, (None, 0.0))
        now = time.monotonic()
        if said != busy.holder or now - said_at >= PLAIN_REPEAT:
            self._said[name] = (busy.holder, now)
            self.err.print(line, highlight=False, soft_wrap=True)


def _at(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else "?"


async def sync_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    jobs: list[Job],
    *,
    full: bool,
    no_wait: bool,
    options: RunnerOptions,
    view: View,
    stopper: Stopper,
) -> list[Outcome]:
    """One cycle per job; busy ones wait (after the others ran) unless `no_wait`."""
    outcomes = {job.name: Outcome(job.name) for job in jobs}

    async def attempt(job: Job, wait: bool) -> CycleReport | None:
        """The job's cycle; None when busy and not waiting (`busy` says who holds it)."""
        outcome = outcomes[job.name]
        outcome.started = True

        def on_page(stream: str, pages: int, objects: int) -> None:
            outcome.pages = pages
            view.page(job.name, stream, pages, objects)

        while True:
            outcome.busy = None
            try:
                return await run_cycle(
                    sessionmaker,
                    job.connector_id,
                    job.source,
                    full=full,
                    trigger=Trigger.MANUAL,
                    options=options,
                    on_page=on_page,
                )
            except ConnectorPaused:
                outcome.paused = True
                return None
            except ConnectorBusy as exc:
                outcome.busy = exc
                if not wait:
                    return None
                view.waiting(job.name, exc)
                await asyncio.sleep(LEASE_POLL)

    async def run(job: Job, wait: bool) -> bool:
        """Whether the job ended busy (not waited for)."""
        view.task(job.name)
        finished, report = await stopper.run(attempt(job, wait))
        outcomes[job.name].stopped = not finished
        outcomes[job.name].report = report
        return finished and report is None and not outcomes[job.name].paused

    busy = [job for job in jobs if await run(job, wait=False)]
    for job in [] if no_wait else busy:
        await run(job, wait=True)
    return list(outcomes.values())


def exit_code(outcomes: list[Outcome], stopped_by: int | None) -> int:
    if stopped_by is not None:
        return 128 + stopped_by
    if any(o.report is not None and not o.report.ok for o in outcomes):
        return 1
    if any((o.busy is not None or o.paused) and o.report is None for o in outcomes):
        return EXIT_TEMPFAIL
    return 0


def report_outcomes(
    outcomes: list[Outcome], stopped_by: int | None, out: Console, err: Console
) -> None:
    for o in outcomes:
        report = o.report
        if report is not None and report.taken_over_from:
            err.print(
                f"{o.name}: took over the lease of {report.taken_over_from} (that process is gone)",
                highlight=False,
                soft_wrap=True,
            )
        if report is not None and report.ok:
            held = (
                " (deletions held: run roster approve-deletions)" if report.held_deletions else ""
            )
            out.print(f"{o.name}: ok, {report.pages} pages, {report.objects} objects{held}")
        elif report is not None:
            err.print(
                f"[red]{o.name}: failed:[/red] {report.error}", highlight=False, soft_wrap=True
            )
        elif o.paused:
            err.print(
                f"[yellow]{o.name}: paused:[/yellow] not run; resume it with "
                f"roster connectors resume {o.name}",
                highlight=False,
                soft_wrap=True,
            )
        elif o.stopped and o.busy is not None:
            err.print(
                f"{o.name}: not run: stopped while waiting for the lease held by "
                f"{o.busy.holder or '?'}",
                highlight=False,
                soft_wrap=True,
            )
        elif o.stopped and not o.started:
            err.print(f"{o.name}: not run (stopped)", highlight=False, soft_wrap=True)
        elif o.stopped:
            name = signal.Signals(stopped_by).name if stopped_by else "a stop"
            err.print(
                f"{o.name}: interrupted by {name} after {o.pages} pages; the lease is released "
                "and the next roster sync resumes there",
                highlight=False,
                soft_wrap=True,
            )
        elif o.busy is not None:
            err.print(
                f"[yellow]{o.name}: busy:[/yellow] being synced by {o.busy.holder or '?'} until "
                f"{_at(o.busy.until)}; try again later, or leave out --no-wait to wait",
                highlight=False,
                soft_wrap=True,
            )


async def _sync(
    settings: Settings,
    connector: str | None,
    *,
    full: bool,
    no_wait: bool,
    stopper: Stopper,
    err: Console,
) -> list[Outcome]:
    from app.connectors.guard import GuardSettings
    from app.connectors.registry import build_source, ensure_env_connectors
    from app.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    jobs: list[Job] = []
    try:
        async with sessionmaker.begin() as session:
            rows = await ensure_env_connectors(session, settings)
        if connector is not None:
            rows = [r for r in rows if connector in (r.name, r.id)]
            if not rows:
                raise RosterError(
                    f"no configured directory connector {connector!r} "
                    "(set ROSTER_GRAPH__* or ROSTER_LDAP__*)"
                )
        if not rows:
            raise RosterError("no directory configured: set ROSTER_GRAPH__* or ROSTER_LDAP__*")
        jobs = [Job(row.name, row.id, build_source(settings, row)) for row in rows]
        options = RunnerOptions(
            guard=GuardSettings(settings.delete_threshold, settings.delete_threshold_percent)
        )
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal,
        )
        with progress:
            return await sync_jobs(
                sessionmaker,
                jobs,
                full=full,
                no_wait=no_wait,
                options=options,
                view=View(progress, err),
                stopper=stopper,
            )
    finally:
        for job in jobs:
            aclose = getattr(job.source, "aclose", None)
            if aclose is not None:
                await aclose()
        await engine.dispose()


def run_sync_command(
    connector: str | None, *, full: bool, no_wait: bool, out: Console, err: Console
) -> None:
    settings = Settings()
    stopper = Stopper()

    async def main() -> list[Outcome]:
        stopper.install()
        try:
            return await _sync(
                settings, connector, full=full, no_wait=no_wait, stopper=stopper, err=err
            )
        finally:
            stopper.uninstall()

    try:
        outcomes = asyncio.run(main())
    except RosterError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_TEMPFAIL if exc.status_code == 503 else 1) from None
    report_outcomes(outcomes, stopper.signal, out, err)
    code = exit_code(outcomes, stopper.signal)
    if code:
        raise typer.Exit(code)
