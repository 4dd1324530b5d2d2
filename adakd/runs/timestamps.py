"""UTC timestamps as the run files and the dashboard's job files write them.

One format: ISO-8601 UTC to the second with a `Z`, e.g. 2026-01-02T03:04:05Z (config.json's
`started_at`, status.json's `updated_at`, the `time` of metrics and events, sweep.json, job
files). `parse_utc` also reads the other ISO-8601 forms earlier files hold (job files wrote
`2026-01-02T03:04:05.123456+00:00`).
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """The current time, e.g. 2026-01-02T03:04:05Z."""
    return datetime.now(UTC).strftime(FORMAT)


def parse_utc(stamp: str) -> datetime:
    """A timestamp of `utc_now` (or any ISO-8601 form with a `Z` or an offset) as an aware datetime;
    one without an offset is taken as UTC. Raises ValueError for text that is not ISO-8601."""
    moment = datetime.fromisoformat(stamp.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
