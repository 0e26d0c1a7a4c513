"""The database's errors (the CLI prints ``str(err)`` as one line, no traceback)."""

from firegen.campaign.errors import FatalError, FiregenError, TransientError

__all__ = ["DatabaseUnreachable", "EmbeddedPortBusy", "FerretDBUnavailable", "FiregenError", "IntegrityError",
           "SchemaViolation"]


class DatabaseUnreachable(TransientError):
    """No MongoDB wire-protocol server answered at the resolved address (it may come back)."""


class EmbeddedPortBusy(FatalError):
    """The embedded server's recorded port is held by another process, so it cannot come back where its
    clients expect it."""


class FerretDBUnavailable(FatalError):
    """The embedded FerretDB server is not installed and cannot be installed here."""


class IntegrityError(FatalError):
    """A stored blob does not match its recorded sha256 checksum."""


class SchemaViolation(FatalError):
    """A document does not satisfy its collection's JSON schema."""
