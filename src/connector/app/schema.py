"""What both stores do with their schema version: refuse one newer than the code."""

from __future__ import annotations

from connector.domain.errors import ConfigurationError


def newer_schema(current: int, known: int) -> None:
    """A store written by a newer connector is refused rather than read by code that does not
    know its schema (a downgrade: restore the backup taken before the upgrade)."""
    if current > known:
        raise ConfigurationError(
            f"its schema is version {current}, newer than this connector's ({known}): "
            "a newer connector wrote it; run that one, or restore a backup from before it"
        )
