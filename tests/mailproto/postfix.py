"""A private Postfix instance for end-to-end tests (docs/testing.md §2), plus a raw SMTP probe.

One master runs several smtpd listeners, each on its own loopback port with its own `-o`
overrides, so every lookup mode is tested by one start (~2 s) instead of a start per mode.
Runs as root; Postfix drops to the `postfix` user, so the base directory must be 0755.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"

# main.cf as docs/testing.md §2 describes it; "{base}" is the private base directory.
MAIN_CF: dict[str, str] = {
    "compatibility_level": "3.6",
    "queue_directory": "{base}/queue",
    "data_directory": "{base}/data",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "maillog_file": "{base}/maillog",
    "maillog_file_prefixes": "{base}",
    "myhostname": "test.invalid",
    "mydomain": "invalid",
    "myorigin": "$myhostname",
    "mydestination": "",
    "local_recipient_maps": "",
    "local_transport": "error:local delivery disabled",
    "alias_maps": "",
    "alias_database": "",
    "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4",
    "mynetworks": "127.0.0.1/32",
    "relay_domains": "example.com, contoso.com",
    "relay_recipient_maps": "",
    "relay_transport": "discard:",
    "default_transport": "error:outbound mail disabled",
    "smtpd_relay_restrictions": "reject_unauth_destination",
    "smtpd_recipient_restrictions": "",
    "smtpd_peername_lookup": "no",
    "smtpd_soft_error_limit": "10000",
    "smtpd_hard_error_limit": "10000",
    "smtpd_error_sleep_time": "0",
    "smtpd_junk_command_limit": "100000",
    "notify_classes": "",
    "biff": "no",
}

MASTER_CF_TAIL = """\
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
proxymap  unix - - n - - proxymap
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def is_installed() -> bool:
    return os.access(POSTFIX, os.X_OK)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostfix:
    """Postfix under a private base directory with one smtpd per named service.

    `services` maps a name to its `-o` overrides (values may contain spaces: they are written
    as `-o { name = value }`, Postfix >= 3.0); `settings` are extra main.cf lines.
    """

    def __init__(
        self,
        services: Mapping[str, Mapping[str, str]],
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="roster-pf-"))
        self.base.chmod(0o755)  # 0700 would lock the postfix user out
        self.etc = self.base / "etc"
        self.ports = {name: free_port() for name in services}
        self._write_config(services, settings or {})

    def _write_config(
        self, services: Mapping[str, Mapping[str, str]], settings: Mapping[str, str]
    ) -> None:
        self.etc.mkdir()
        (self.base / "queue").mkdir()  # Postfix must create data/ itself (lock file owner)
        main = {key: value.format(base=self.base) for key, value in MAIN_CF.items()}
        main.update(settings)
        (self.etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        lines = []
        for name, overrides in services.items():
            opts = " ".join(f"-o {{ {k} = {v} }}" for k, v in overrides.items())
            lines.append(f"127.0.0.1:{self.ports[name]} inet n - n - - smtpd {opts}\n")
        (self.etc / "master.cf").write_text("".join(lines) + MASTER_CF_TAIL)

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.etc), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, timeout: float = 20.0) -> None:
        done = self.postfix("start")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stdout}{done.stderr}{self.maillog()}")
        deadline = time.monotonic() + timeout
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"smtpd not up on {port}: {self.maillog()}") from None
                    time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the master and wait until it is gone, then delete the base directory."""
        pid_file = self.base / "queue" / "pid" / "master.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        self.postfix("stop")
        deadline = time.monotonic() + timeout
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(self.base, ignore_errors=True)

    def maillog(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no maillog)"


async def postmap_query(config_dir: Path, key: str, table: str) -> tuple[int, str]:
    """`postmap -q key table` without blocking the loop (our servers may run on it)."""
    proc = await asyncio.create_subprocess_exec(
        *(POSTMAP, "-c", str(config_dir), "-q", key, table),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode(errors="replace").strip()


class SmtpProbe:
    """Raw SMTP client: sends `RCPT TO:<addr>` verbatim (smtplib re-quotes addresses)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> SmtpProbe:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        probe = cls(reader, writer)
        await probe.reply()  # banner
        await probe.command("EHLO probe.invalid")
        return probe

    async def reply(self) -> str:
        """Read one (possibly multi-line) reply; return its last line."""
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 120)).decode().rstrip("\r\n")
            if len(line) < 4 or line[3] != "-":
                return line

    async def command(self, text: str) -> str:
        self.writer.write(text.encode() + b"\r\n")
        return await self.reply()

    async def rcpt(self, address: str, sender: str = "probe@probe.invalid") -> str:
        """A fresh transaction per probe (RSET + MAIL + RCPT), as docs/testing.md §2 says."""
        await self.command("RSET")
        assert (await self.command(f"MAIL FROM:<{sender}>")).startswith("250")
        return await self.command(f"RCPT TO:<{address}>")

    async def rcpts(self, addresses: Iterable[str]) -> dict[str, str]:
        return {address: await self.rcpt(address) for address in addresses}

    async def close(self) -> None:
        self.writer.write(b"QUIT\r\n")
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
