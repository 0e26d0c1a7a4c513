"""Errors that firegen reports to users as one line (the CLI prints ``str(err)``, no traceback)."""


class FiregenError(Exception):
    """Base class of user-facing errors: the message names the problem and the fix."""


class DatabaseUnreachable(FiregenError):
    """No MongoDB wire-protocol server answered at the resolved address."""


class FerretDBUnavailable(FiregenError):
    """The embedded FerretDB server is not installed and cannot be installed here."""


class IntegrityError(FiregenError):
    """A stored blob does not match its recorded sha256 checksum."""


class SchemaViolation(FiregenError):
    """A document does not satisfy its collection's JSON schema."""
