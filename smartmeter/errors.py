"""Exceptions that carry their exit code and HTTP status.

One boundary translates them: the CLI (``smartmeter.cli``) turns them into a message on stderr and
an exit code; the HTTP API turns them into a JSON error with the status. Everything else raises.
Exit codes follow sysexits(3) where one fits.
"""

from __future__ import annotations


class SmartMeterError(Exception):
    """Base of every error we raise on purpose."""

    exit_code: int = 1
    http_status: int = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(SmartMeterError):
    """A settings file, profile or secret is missing or invalid."""

    exit_code = 2
    http_status = 500


class InputError(SmartMeterError):
    """Input data (CSV row, JSON body, MQTT payload, CLI argument) is malformed."""

    exit_code = 65  # EX_DATAERR
    http_status = 400


class ImageError(InputError):
    """A file is not a decodable image, or the image does not fit the profile."""


class UnreadableError(SmartMeterError):
    """The register could not be read with enough confidence. Honest 'cannot read'."""

    exit_code = 3
    http_status = 422


class NoCounterFound(UnreadableError):
    """Auto-locate found nothing in the photo that looks like a counter (as opposed to a counter it cannot read)."""


class AlignmentError(UnreadableError):
    """The photo could not be aligned to its profile's reference image with confidence."""


class MovedTooFar(AlignmentError):
    """The alignment is trusted and says the camera moved more than ``max_shift_px``: final, no fallback."""


class ValidationRejected(SmartMeterError):
    """A reading was read but rejected by validation (goes to the review queue)."""

    exit_code = 3
    http_status = 409


class NotFoundError(SmartMeterError):
    """A meter, photo, reading or review item does not exist."""

    exit_code = 66  # EX_NOINPUT
    http_status = 404


class StoreError(SmartMeterError):
    """The image store (local folder or Dropbox) failed."""

    exit_code = 74  # EX_IOERR
    http_status = 502


class IntegrityError(StoreError):
    """A content hash did not match: the bytes are not what was sent or stored."""


class DatabaseError(SmartMeterError):
    """The readings database failed or has an unexpected schema."""

    exit_code = 74
    http_status = 503


class ExternalToolError(SmartMeterError):
    """An external binary (tesseract, mosquitto) is missing, too old, or failed."""

    exit_code = 69  # EX_UNAVAILABLE
    http_status = 503
