"""Errors the project raises on bad input: each names the case and file and says what is wrong."""
from __future__ import annotations

from pathlib import Path


class SeganError(Exception):
    """Base of every error the project raises on purpose (the CLI turns it into exit code 2)."""


class DataError(SeganError):
    """A data set, case or file that cannot be used as it is.

    The message always starts with the case id (when known) and the file (when known),
    so a user reading one line knows what to fix.
    """

    def __init__(self, what: str, *, case_id: str | None = None, path: str | Path | None = None):
        self.what = what
        self.case_id = case_id
        self.path = Path(path) if path is not None else None
        where = []
        if case_id is not None:
            where.append(f"case {case_id}")
        if path is not None:
            where.append(f"file {path}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + what)


class ConfigError(SeganError):
    """A profile or parameter that is missing, mistyped or out of range."""
