"""Where the database is: resolving the user's MongoDB (URI or launchpad file) or the embedded one.

Precedence, first match wins:

1. ``--uri`` / ``--launchpad`` given on the command line;
2. ``FIREGEN_MONGO_URI`` / ``FIREGEN_LAUNCHPAD`` in the environment;
3. FireWorks' own lookup: ``my_launchpad.yaml`` in the working directory (unless firegen wrote it
   for the embedded server), then ``LAUNCHPAD_LOC`` from ``FW_config.yaml``;
4. the embedded FerretDB under ``<home>/db`` (``home`` = ``FIREGEN_HOME`` or ``./.firegen``).

Only case 4 ever starts a server. Passwords are never printed: :func:`DBTarget.describe` masks them.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pymongo
import yaml
from fireworks import LaunchPad

from firegen.campaign.errors import FiregenError
from firegen.db.errors import DatabaseUnreachable
from firegen.db.fireworks_archive import ARCHIVE_SUFFIX
from firegen.db.embedded.capabilities import adapt_launchpad
from firegen.db.embedded.server import EmbeddedServer
from firegen.db.uri import TLS_FILE_OPTIONS, check_uri, database_name, mask_secrets, mask_uri

EMBEDDED_MARK = "# written by firegen for its embedded FerretDB"
DEFAULT_DB_NAME = "firegen"
LAUNCHPAD_FILE = "my_launchpad.yaml"
SERVER_SELECTION_MS = int(os.environ.get("FIREGEN_DB_TIMEOUT_MS", "5000"))
DB_WAIT_S = float(os.environ.get("FIREGEN_DB_WAIT_S", "3600"))
"""How long workers and ``firegen run`` wait for a database that stopped answering before they give up (s)."""

# FireWorks queries these Firework spec fields for firegen; LaunchPad builds the indexes.
USER_INDICES = ["spec.firegen.campaign", "spec.firegen.iteration", "spec._category"]
WF_USER_INDICES = ["metadata.firegen_campaign"]


def firegen_home() -> Path:
    """Folder of firegen's local state: ``$FIREGEN_HOME`` or ``./.firegen``."""
    return Path(os.environ.get("FIREGEN_HOME", ".firegen")).resolve()


def embedded_server(home: Path | None = None) -> EmbeddedServer:
    return EmbeddedServer((home or firegen_home()) / "db")


@dataclass
class DBTarget:
    """A resolved database: either a MongoDB URI or a FireWorks launchpad file.

    Attributes:
        uri: connection string (may hold credentials; never print it, use :meth:`describe`).
        launchpad_file: path of a launchpad YAML when the target came from one.
        source: where it came from, for messages ("--uri", "FIREGEN_MONGO_URI", "embedded", ...).
        server: firegen's embedded FerretDB when the target is that server, else None.
    """

    uri: str | None = None
    launchpad_file: Path | None = None
    source: str = "embedded"
    server: EmbeddedServer | None = None

    @property
    def embedded(self) -> bool:
        """True for firegen's own FerretDB (``server`` is then its process manager)."""
        return self.server is not None

    def describe(self) -> str:
        where = mask_uri(self.uri) if self.uri else str(self.launchpad_file)
        return f"{where} (from {self.source})"

    def launchpad(self) -> LaunchPad:
        """A FireWorks LaunchPad on this target (no round trip yet); a client pymongo refuses to build (an
        unreadable TLS file, a bad option in a launchpad file) is one :class:`FiregenError` naming the source."""
        kwargs = {"serverSelectionTimeoutMS": SERVER_SELECTION_MS}
        try:
            if self.launchpad_file is not None:
                spec = read_launchpad_spec(self.launchpad_file)
                spec["mongoclient_kwargs"] = {**kwargs, **(spec.get("mongoclient_kwargs") or {})}
                return LaunchPad.from_dict(spec)
            return LaunchPad(host=self.uri, name=database_name(self.uri, DEFAULT_DB_NAME), uri_mode=True,
                             mongoclient_kwargs=kwargs, user_indices=USER_INDICES, wf_user_indices=WF_USER_INDICES,
                             strm_lvl="WARNING")
        except (pymongo.errors.ConfigurationError, pymongo.errors.InvalidName, OSError, TypeError, ValueError) as exc:
            raise FiregenError(f"{self.source}: cannot use the database settings of {self.describe()}: "
                               f"{mask_secrets(str(exc)).splitlines()[0][:200]}. Fix: correct them (MongoDB URI "
                               "options, or the launchpad file's host/port/name/username/password/authsource/"
                               "mongoclient_kwargs).") from None

    def connect(self) -> LaunchPad:
        """The LaunchPad, after checking that the server answers (one clear error otherwise); on FerretDB
        with Fireworks and launches addressed by ``_id`` (:mod:`firegen.db.embedded.fireworks_keys`)."""
        if self.server is not None and not self.server.is_running():
            raise DatabaseUnreachable(f"the embedded FerretDB under {self.server.root} is not running. "
                                      "Fix: start it with `firegen db up` (or give --uri / FIREGEN_MONGO_URI).")
        lp = self.launchpad()
        try:
            lp.connection.admin.command("ping")
        except pymongo.errors.OperationFailure as exc:
            if exc.code != 18:  # not AuthenticationFailed: the server answered, so the fix is not the address
                raise FiregenError(f"the database at {self.describe()} refused `ping`: "
                                   f"{mask_secrets(str(exc)).splitlines()[0][:200]}. Fix: check the user's rights "
                                   "and the authMechanism option.") from None
            raise FiregenError(f"the database at {self.describe()} refused the user name and password "
                               "(authentication failed). Fix: check them and the authSource option (the database "
                               "the user was created in; default: the URI's database, or the launchpad file's "
                               "authsource or name); percent-encode '@', ':', '/' and '%' in a URI.") from None
        except pymongo.errors.PyMongoError as exc:
            reason = mask_secrets(str(exc).split(" (configured timeouts")[0].split(", Timeout")[0])[:300]
            hint = "start it with `firegen db up`" if self.embedded else "check that the server runs and the address"
            if re.search(r"SSL|TLS|certificate", reason, re.IGNORECASE):
                hint = ("check the TLS options: tls=true, tlsCAFile (the CA that signed the server's certificate), "
                        "tlsCertificateKeyFile (when the server asks for a client certificate)")
            raise DatabaseUnreachable(f"cannot reach the database at {self.describe()}: {reason}. Fix: {hint}.") from None
        return adapt_launchpad(lp)


def _fireworks_lookup() -> tuple[Path, str] | None:
    local = Path(LAUNCHPAD_FILE)
    if local.is_file() and not is_embedded_launchpad(local):
        return local.resolve(), f"./{LAUNCHPAD_FILE}"
    from fireworks.fw_config import LAUNCHPAD_LOC

    if LAUNCHPAD_LOC and Path(LAUNCHPAD_LOC).is_file() and not is_embedded_launchpad(Path(LAUNCHPAD_LOC)):
        return Path(LAUNCHPAD_LOC), "FW_config.yaml LAUNCHPAD_LOC"
    return None


def resolve_target(uri: str | None = None, launchpad: str | Path | None = None, home: Path | None = None) -> DBTarget:
    """Apply the precedence of this module's docstring and return the target (starts nothing)."""
    if uri and launchpad:
        raise FiregenError("give either --uri or --launchpad, not both.")
    if uri:
        return DBTarget(uri=check_uri(uri, "--uri"), source="--uri")
    if launchpad:
        return DBTarget(launchpad_file=_existing(launchpad, "--launchpad"), source="--launchpad")
    if os.environ.get("FIREGEN_MONGO_URI"):
        return DBTarget(uri=check_uri(os.environ["FIREGEN_MONGO_URI"], "FIREGEN_MONGO_URI"), source="FIREGEN_MONGO_URI")
    if os.environ.get("FIREGEN_LAUNCHPAD"):
        return DBTarget(launchpad_file=_existing(os.environ["FIREGEN_LAUNCHPAD"], "FIREGEN_LAUNCHPAD"),
                        source="FIREGEN_LAUNCHPAD")
    found = _fireworks_lookup()
    if found:
        return DBTarget(launchpad_file=found[0], source=found[1])
    server = embedded_server(home)
    return DBTarget(uri=server.uri + DEFAULT_DB_NAME, source="embedded", server=server)


def _existing(path: str | Path, field: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FiregenError(f"{field}: launchpad file {p} does not exist. Fix: give the path of a FireWorks my_launchpad.yaml.")
    return p.resolve()


def read_launchpad_spec(path: Path) -> dict:
    """The settings of a FireWorks launchpad file, checked as far as can be without connecting: a mapping, a
    URI host (``uri_mode``) that :func:`check_uri` accepts, readable TLS files in ``mongoclient_kwargs``.
    Raises :class:`FiregenError` naming the file and the field (never a password)."""
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FiregenError(f"{path}: cannot read this launchpad file ({type(exc).__name__}). Fix: give a FireWorks "
                           "my_launchpad.yaml (YAML with host, name, ...).") from None
    spec = spec or {}
    if not isinstance(spec, dict):
        raise FiregenError(f"{path}: a launchpad file is a YAML mapping (host, name, ...), not a "
                           f"{type(spec).__name__}. Fix: write it as `lpad init` or `firegen db launchpad` does.")
    if spec.get("uri_mode"):
        spec["host"] = check_uri(str(spec.get("host") or ""), f"{path}: host")
    kwargs = spec.get("mongoclient_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise FiregenError(f"{path}: mongoclient_kwargs must be a mapping of pymongo.MongoClient options. "
                           "Fix: e.g. `mongoclient_kwargs: {tls: true, tlsCAFile: /path/ca.pem}`.")
    for key, value in kwargs.items():
        known = next((name for name in TLS_FILE_OPTIONS if name.lower() == str(key).lower()), None)
        if known and not os.access(os.path.expanduser(str(value)), os.R_OK):
            raise FiregenError(f"{path}: mongoclient_kwargs.{key}: {value} is not a readable file. Fix: give the "
                               "absolute path of an existing PEM file.")
    return spec


def is_embedded_launchpad(path: Path) -> bool:
    try:
        with open(path) as fh:
            return fh.readline().startswith(EMBEDDED_MARK)
    except OSError:
        return False


def write_launchpad_file(path: Path, uri: str, embedded: bool = False) -> Path:
    """Write a standard FireWorks launchpad file (``uri_mode``) for ``uri``, readable by its owner only.

    Plain ``lpad -l FILE``, ``rlaunch -l FILE`` and ``qlaunch -l FILE`` then work unchanged. A URI
    may hold credentials: container workers write the file to a memory-backed folder (tmpfs) so they
    never reach a disk. ``embedded`` marks the file as firegen's own, so that the lookup of
    :func:`resolve_target` never mistakes it for a user's database.
    """
    spec = {"host": uri, "name": database_name(uri, DEFAULT_DB_NAME), "uri_mode": True,
            "user_indices": USER_INDICES, "wf_user_indices": WF_USER_INDICES,
            "mongoclient_kwargs": {"serverSelectionTimeoutMS": SERVER_SELECTION_MS}}
    return write_private_yaml(path, spec, EMBEDDED_MARK if embedded else None)


def write_archive_launchpad_file(path: Path, target: DBTarget) -> Path:
    """A launchpad file for the archive of finished iterations beside ``target``'s LaunchPad (database
    ``<name>_archive``, :mod:`firegen.db.fireworks_archive`), so that ``lpad -l FILE get_fws`` reads it."""
    if target.launchpad_file is not None:
        spec = read_launchpad_spec(target.launchpad_file)
        name = spec.get("name") or DEFAULT_DB_NAME
        if not spec.get("uri_mode"):  # the user still authenticates where it was created (FireWorks' default: name)
            spec["authsource"] = spec.get("authsource") or name
        spec["name"] = name + ARCHIVE_SUFFIX
    else:
        spec = {"host": target.uri, "name": database_name(target.uri, DEFAULT_DB_NAME) + ARCHIVE_SUFFIX,
                "uri_mode": True, "mongoclient_kwargs": {"serverSelectionTimeoutMS": SERVER_SELECTION_MS}}
    return write_private_yaml(path, spec, None)


def write_private_yaml(path: Path, spec: dict, mark: str | None = None) -> Path:
    """Write ``spec`` as YAML readable by its owner only (0600), after ``mark`` as a first line when given.

    Written beside ``path`` (a new 0600 file) and renamed over it, so that a process reading it meanwhile
    (workers started together each rewrite it) sees the old file or the new one, never an empty or cut one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as fh:
            if mark:
                fh.write(mark + "\n")
            yaml.safe_dump(spec, fh, sort_keys=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def database_address(client) -> str:
    """``mongodb://host:port[,host:port]`` of a pymongo client's servers: no credentials, no options."""
    seeds = sorted(client.topology_description.server_descriptions())
    return "mongodb://" + ",".join(f"{host}:{port}" for host, port in seeds)


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database does not answer (rather than that it refused what was asked)."""
    return isinstance(exc, (pymongo.errors.ConnectionFailure, DatabaseUnreachable))


def wait_for_database(client, since: float | None = None, max_wait: float = DB_WAIT_S,
                      echo: Callable[[str], None] | None = None, poll: float = 2.0) -> float:
    """Block until the database of ``client`` answers ``ping`` again, saying so once, in one line.

    Args:
        client: a pymongo client (a LaunchPad's ``connection``).
        since: when it was first found unreachable (``time.time()``; default now).
        max_wait: give up after this many seconds from ``since``.
        echo: where the two lines go (default stderr).
        poll: seconds between tries (each try also waits up to the client's server-selection timeout).

    Returns:
        float: seconds it was unreachable.

    Raises:
        DatabaseUnreachable: it did not come back within ``max_wait`` (one line saying so).
    """
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    since = time.time() if since is None else since
    where = database_address(client)
    echo(f"database at {where} unreachable since {time.strftime('%H:%M:%S', time.localtime(since))}; "
         f"waiting (Ctrl-C to stop)")
    while True:
        try:
            client.admin.command("ping")
            break
        except pymongo.errors.PyMongoError:
            if time.time() - since >= max_wait:
                raise DatabaseUnreachable(f"database at {where} unreachable for {max_wait:.0f} s; gave up. Fix: start "
                                          "it again (`firegen db up` for the embedded one), then restart this "
                                          "command") from None
            time.sleep(poll)
    down = time.time() - since
    echo(f"database at {where} answers again after {down:.0f} s; continuing")
    return down


def retry_unreachable(call: Callable[[], object], client, max_wait: float = DB_WAIT_S,
                      echo: Callable[[str], None] | None = None):
    """``call()``, waiting for the database (:func:`wait_for_database`) and trying again each time it does not
    answer; other errors are raised as they are."""
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            wait_for_database(client, time.time(), max_wait, echo)
