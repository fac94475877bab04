"""`roster demo` as a real process: its printed examples are what the HTTP API answers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

EXAMPLE = re.compile(r"^\s+(.+?):\s+GET (http://\S+)\n\s+-> (\d{3}) (\{.*\})$", re.MULTILINE)


def test_demo_prints_urls_key_and_real_answers(tmp_path: Path) -> None:
    env = os.environ | {"ROSTER_DEMO_PORT": "0"}
    env = {k: v for k, v in env.items() if not k.startswith("ROSTER_GRAPH__")}
    with subprocess.Popen(
        [sys.executable, "-m", "app", "demo", "--users", "120"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        lines = run_and_check(proc, tmp_path)
    assert proc.returncode == 0, "".join(lines)


def run_and_check(proc: subprocess.Popen[str], tmp_path: Path) -> list[str]:
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while not lines or "Press Ctrl-C" not in lines[-1]:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        key = re.search(r"API key:\s+(\S+)", text)
        assert key is not None, text
        base = re.search(r"Lookup API:\s+(http://[\d.:]+)/v1/recipients/", text)
        assert base is not None, text
        examples = EXAMPLE.findall(text)
        assert [label for label, *_ in examples] == [
            "an alias",
            "a disabled shared mailbox",
            "an unknown address",
        ], text
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        with httpx.Client(headers=headers, timeout=10) as client:
            assert client.get(f"{base.group(1)}/healthz").status_code == 200
            for _, url, status, body in examples:
                answer = client.get(url)
                assert answer.status_code == int(status)
                assert answer.json() == orjson.loads(body)
            alias, shared, unknown = (orjson.loads(body) for *_, body in examples)
        assert alias["verdict"] == "accept" and alias["primary"] != alias["address"]
        assert shared["verdict"] == "accept" and shared["enabled"] is False
        assert (unknown["verdict"], unknown["reason"]) == ("reject", "unknown_recipient")
        assert (tmp_path / "roster-demo.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        lines.append(proc.stdout.read())
    return lines
