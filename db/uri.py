"""MongoDB connection strings: checking them, parsing the database name and masking credentials for display."""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

from pymongo import uri_parser
from pymongo.common import URI_OPTIONS_ALIAS_MAP, URI_OPTIONS_VALIDATOR_MAP
from pymongo.errors import ConfigurationError, InvalidURI

from firegen.campaign.errors import FiregenError

_SCHEME = re.compile(r"^mongodb(?:\+srv)?://", re.IGNORECASE)
#: Query options whose values are secrets (``tlsCertificateKeyFilePassword``, an AWS session token in
#: ``authMechanismProperties``): their values are masked too.
_SECRET_OPTION = re.compile(r"(?P<key>[?&][^=&]*(?:password|token|secret|authMechanismProperties)[^=&]*=)[^&]*",
                            re.IGNORECASE)
#: Options naming files the client reads (pymongo checks they are readable; firegen makes them absolute so
#: that workers, which run in other folders, find them too).
TLS_FILE_OPTIONS = ("tlsCAFile", "tlsCertificateKeyFile", "tlsCRLFile")
_FIX_ESCAPE = ("Fix: percent-encode the user name and password (python3 -c 'import urllib.parse, getpass; "
               "print(urllib.parse.quote_plus(getpass.getpass()))'), or give the URI in a launchpad file")


def _split_credentials(rest: str) -> tuple[str | None, str]:
    """``(user info, the rest)`` of a URI without its scheme; user info is None when there is none.

    The user info ends at the *last* ``@`` (a password typed with ``@``, ``/`` or ``:`` stays whole), unless
    that ``@`` lies in an option value (``?tlsCAFile=/a@b/ca.pem``: an ``=`` between the first ``?`` and it),
    when it ends at the last ``@`` before the options.
    """
    at = rest.rfind("@")
    query = rest.find("?")
    if 0 <= query < at and "=" in rest[query:at]:
        at = rest.rfind("@", 0, query)
    if at < 0:
        return None, rest
    return rest[:at], rest[at + 1:]


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


def has_password(uri: str) -> bool:
    """Whether the URI holds a password (``user:password@``)."""
    scheme = _SCHEME.match(uri or "")
    userinfo, _after = _split_credentials(uri[scheme.end():]) if scheme else (None, "")
    return bool(userinfo and ":" in userinfo)


def database_name(uri: str, default: str = "firegen") -> str:
    """The database named in the URI path (``mongodb://host/NAME``), or ``default``."""
    scheme = _SCHEME.match(uri)
    rest = uri[scheme.end():] if scheme else uri
    _userinfo, after = _split_credentials(rest)
    path = after.split("?", 1)[0].partition("/")[2]
    return unquote(path) or default


def uri_options(uri: str) -> dict[str, str]:
    """The URI's query options, keys as written, values unquoted (the last of a repeated key wins)."""
    query = uri.partition("?")[2]
    pairs = (item.partition("=") for item in re.split(r"[&;]", query) if item)
    return {key: unquote(value) for key, _eq, value in pairs}


def check_uri(uri: str, field: str) -> str:
    """Check a MongoDB URI without connecting and return it as firegen uses it: scheme in lower case, the files
    of :data:`TLS_FILE_OPTIONS` as absolute paths. Raises :class:`FiregenError` with one line that names
    ``field`` and the fix, and never the password.

    pymongo's own parser checks the rest (escaping, host list, option names and values); a ``mongodb+srv``
    URI is parsed as a plain one for that, so no DNS look-up happens here.
    """
    scheme = _SCHEME.match(uri or "")
    if not scheme:
        start = f"{(uri or '').partition('://')[0][:20]}://" if "://" in (uri or "") else "without a scheme"
        raise FiregenError(f"{field}: a URI {'starting ' + start if '://' in start else start} is not a MongoDB URI. Fix: write "
                           "mongodb://[user:password@]host[:port][/database][?options] (or mongodb+srv://...).")
    rest = uri[scheme.end():]
    userinfo, after = _split_credentials(rest)
    if userinfo is not None and (re.search(r"[@/?#\[\]]", userinfo) or userinfo.count(":") > 1
                                 or re.search(r"%(?![0-9a-fA-F]{2})", userinfo)):
        raise FiregenError(f"{field}: the user name or password in the URI holds a character that must be "
                           f"percent-encoded ('@', ':', '/', '?', '#', '[', ']' or '%'). {_FIX_ESCAPE}.")
    options = uri_options(after)
    for key, value in options.items():
        known = next((name for name in TLS_FILE_OPTIONS if name.lower() == key.lower()), None)
        if known and not os.access(os.path.abspath(os.path.expanduser(value)), os.R_OK):
            raise FiregenError(f"{field}: {known} {value} is not a readable file. Fix: give the path of an existing "
                               "PEM file (absolute, or relative to the folder you run firegen in).")
    normalized = scheme.group(0).lower() + _absolute_tls_files(rest)
    _pymongo_check(normalized, field, userinfo)
    return normalized


def _absolute_tls_files(rest: str) -> str:
    head, question, query = rest.partition("?")
    if not question:
        return rest

    def absolute(match: re.Match) -> str:
        key, value = match.group("key"), unquote(match.group("value"))
        return key + quote(os.path.abspath(os.path.expanduser(value)), safe="/")

    names = "|".join(TLS_FILE_OPTIONS)
    return head + "?" + re.sub(rf"(?P<key>(?:^|(?<=[&;]))(?:{names})=)(?P<value>[^&;]*)", absolute, query,
                               flags=re.IGNORECASE)


def _pymongo_check(uri: str, field: str, userinfo: str | None) -> None:
    known = set(URI_OPTIONS_VALIDATOR_MAP) | set(URI_OPTIONS_ALIAS_MAP)
    unknown = [key for key in uri_options(uri) if key.lower() not in known]
    if unknown:
        # a password with an unescaped '?' reads as options here: never name what may be part of one
        scheme_free = uri.partition("://")[2]
        suspect = scheme_free[:scheme_free.rfind("@")] if "@" in scheme_free else ""
        name = f" {unknown[0]!r}" if unknown[0] not in suspect else " (or a password with an unescaped '?')"
        raise FiregenError(f"{field}: unknown URI option{name}. Fix: spell it as in "
                           "https://www.mongodb.com/docs/manual/reference/connection-string-options/ "
                           "(e.g. authSource, tls, tlsCAFile, tlsCertificateKeyFile, replicaSet).")
    plain = re.sub(r"^mongodb\+srv://", "mongodb://", uri)
    try:
        uri_parser.parse_uri(plain, validate=True, warn=False)
    except (InvalidURI, ConfigurationError, ValueError, TypeError, OSError) as exc:
        reason = mask_secrets(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        if userinfo:  # pymongo quotes what it could not parse ('Port must be an integer ...: 'x''): keep secrets out
            reason = re.sub(r"'([^']*)'", lambda m: m.group(0) if not m.group(1) or m.group(1) not in userinfo
                            else "'***'", reason)
            if userinfo.partition(":")[2] and userinfo.partition(":")[2] in reason:
                reason = "the URI does not parse"
        raise FiregenError(f"{field}: {reason[:200].rstrip('.')}. Fix: correct the URI (see "
                           "https://www.mongodb.com/docs/manual/reference/connection-string/).") from None
