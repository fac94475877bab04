"""Roster: mirrors an organisation's mail directory into SQL and answers recipient lookups."""

__version__ = "0.1.0"
