"""Field types shared by the connectors' config models and the env settings: values from the
environment arrive as text, values from an API body as JSON; both go through these."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator


def _seconds_or_iso(value: Any) -> Any:
    """Durations are seconds (`900`, `0.5`) or ISO 8601 (`PT15M`); env values arrive as text."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return timedelta(seconds=float(value))
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso)]


def word_list(value: Any) -> Any:
    """Lists in the environment are comma- or space-separated (`a.example, b.example`)."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value
