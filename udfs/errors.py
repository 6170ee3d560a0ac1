"""The project's exception hierarchy: one base class, so callers can catch everything we raise."""


class RerankError(Exception):
    """Base class of every error raised by this project."""


class ConfigError(RerankError):
    """A setting is missing, mistyped or out of range."""


class InvalidRecord(RerankError):
    """An input record cannot be processed; `reason` goes to the dead-letter topic."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason
