"""MongoDB connection strings: parsing the database name and masking credentials for display."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^mongodb(?:\+srv)?://", re.IGNORECASE)
#: Query options whose values are secrets (``tlsCertificateKeyFilePassword``, an AWS session token in
#: ``authMechanismProperties``): their values are masked too.
_SECRET_OPTION = re.compile(r"(?P<key>[?&][^=&]*(?:password|token|secret|authMechanismProperties)[^=&]*=)[^&]*",
                            re.IGNORECASE)


def mask_uri(uri: str) -> str:
    """Return ``uri`` with its password, and the values of query options that hold secrets, replaced by
    ``***`` (user names are kept).

    The credentials end at the *last* ``@`` of the URI, so a password typed without escaping (with ``@``,
    ``/`` or ``:`` in it; pymongo refuses such a URI, but it is still printed in the error) is masked
    whole; the scheme is matched in any case. When it is unclear where the password ends, more is masked,
    never less.

    >>> mask_uri("mongodb://alice:s3cret@db.example:27017/firegen")
    'mongodb://alice:***@db.example:27017/firegen'
    """
    scheme = _SCHEME.match(uri)
    if not scheme:
        return uri
    rest = uri[scheme.end():]
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***{rest[at:]}"
    return scheme.group(0) + _SECRET_OPTION.sub(lambda m: m.group("key") + "***", rest)


def mask_secrets(text: str) -> str:
    """Mask every MongoDB URI password inside free text (log lines, error messages)."""
    return re.sub(r"mongodb(?:\+srv)?://[^\s'\"]+", lambda m: mask_uri(m.group(0)), text, flags=re.IGNORECASE)


def database_name(uri: str, default: str = "firegen") -> str:
    """The database named in the URI path (``mongodb://host/NAME``), or ``default``."""
    path = urlsplit(uri).path.lstrip("/")
    return path.split("?")[0] or default
