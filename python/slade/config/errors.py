"""The config's two signals: ConfigError (a value, key or file that cannot be used) and DeprecatedKeyWarning (an old
key that still loads, mapped to its new place)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A config problem, named by its dotted field (or file and line). `errors` holds every problem found when
    validation collected several; str() lists them one per line."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = list(errors) if errors else [message]


class DeprecatedKeyWarning(FutureWarning):
    """An old key (e.g. train.seed) was read and mapped to its new one (runtime.seed). A FutureWarning, so that
    users see it by default."""
