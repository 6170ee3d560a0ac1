"""The project's exception hierarchy: one base class, so callers can catch everything we raise."""


class RerankError(Exception):
    """Base class of every error raised by this project."""


class ConfigError(RerankError):
    """A setting is missing, mistyped or out of range."""


class InvalidRecord(RerankError):
    """An input record cannot be processed; the message goes to the dead-letter topic.

    `step` names where it failed ("parse user-event"), `detail` says what is wrong in words (naming
    the field and the offending value), `reason` is a short machine-readable code
    (`udfs.records.Reason`, e.g. "missing_field") so dead letters can be counted per reason.
    The message reads "<step>: <detail> [<reason>]".
    """

    def __init__(self, step: str, detail: str, reason: str = "invalid") -> None:
        super().__init__(f"{step}: {detail} [{reason}]")
        self.step = step
        self.detail = detail
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # Exceptions pickle their args by default; ours has three (Flink may ship it between processes).
        return type(self), (self.step, self.detail, self.reason)
