"""MongoDB connection strings: parsing the database name and masking credentials for display."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_CREDENTIALS = re.compile(r"^(?P<scheme>mongodb(?:\+srv)?://)(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@")


def mask_uri(uri: str) -> str:
    """Return ``uri`` with its password replaced by ``***`` (user names are kept).

    >>> mask_uri("mongodb://alice:s3cret@db.example:27017/firegen")
    'mongodb://alice:***@db.example:27017/firegen'
    """
    match = _CREDENTIALS.match(uri)
    if not match or match.group("password") is None:
        return uri
    return f"{match.group('scheme')}{match.group('user')}:***@{uri[match.end():]}"


def mask_secrets(text: str) -> str:
    """Mask every MongoDB URI password inside free text (log lines, error messages)."""
    return re.sub(r"mongodb(?:\+srv)?://[^\s'\"]+", lambda m: mask_uri(m.group(0)), text)


def database_name(uri: str, default: str = "firegen") -> str:
    """The database named in the URI path (``mongodb://host/NAME``), or ``default``."""
    path = urlsplit(uri).path.lstrip("/")
    return path.split("?")[0] or default
