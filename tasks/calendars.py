"""Holiday calendars: `calendars/<name>.txt`, one ISO date per line, named by schedule tags."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import task

from rules.config import ConfigError
from rules.schedule import ScheduleError, parse_holidays

REPO_ROOT = Path(__file__).resolve().parent.parent


@task(name="load-calendars")
def load_calendars(directory: str) -> dict[str, frozenset[date]]:
    """Every calendar in `directory` (relative paths start at the project root)."""
    path = Path(directory)
    path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_dir():
        raise ConfigError(f"calendars_dir {directory!r} is not a directory: create it or pass another one")
    calendars = {}
    for file in sorted(path.glob("*.txt")):
        try:
            calendars[file.stem] = parse_holidays(file.read_text())
        except ScheduleError as exc:
            raise ConfigError(f"holiday calendar {file.name}: {exc}; fix the file") from None
    return calendars
