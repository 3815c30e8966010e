"""Errors that users see.

Every error a user can cause (bad data, bad input file, unknown name, bad option) is an
`AtzooError` whose message names the file or value and what was expected. The command line
prints the message alone (no traceback) and exits with status 2.
"""


class AtzooError(Exception):
    """A problem with the user's input, data or configuration, worded for the user."""


class DataError(AtzooError):
    """The dataset on disk does not follow the AT-USTC layout, or a set the protocol needs is empty."""


class FeaturesError(AtzooError):
    """A features file handed to the evaluation is malformed."""


class PluginError(AtzooError):
    """A plugin failed to load or registered an invalid item, and strict mode is on."""


class PackageError(AtzooError):
    """A model package (weights + config) is missing, damaged, unsafe, or names what is not installed."""


class HubError(AtzooError):
    """A push to or pull from the Hugging Face Hub failed: bad repo id, checksum mismatch, not cached."""


class ChecksumError(HubError):
    """A downloaded file's sha256 is not the one expected: it was not loaded."""


class UploadBlockedError(HubError):
    """The upload guard found files that must never leave the machine; nothing was sent."""


class LeaderboardError(AtzooError):
    """A leaderboard entry is malformed, inconsistent, a duplicate, or cannot be verified."""


class ServiceError(AtzooError):
    """A runner directory, queue file or job request is not what the runner service expects."""


class FormatError(AtzooError):
    """A file atzoo reads or writes does not follow its format: not JSON, a duplicate key, a
    non-finite number, a value of the wrong type or out of range, an unknown format version.

    The message names the file, the field (a dotted path), the value found and what was expected.
    `file` and `problems` keep the same facts for callers that need them separately."""

    def __init__(self, message: str, *, file: str = "", problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.file = file
        self.problems = problems
