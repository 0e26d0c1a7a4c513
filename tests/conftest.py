"""Shared fixtures: a real FerretDB (SQLite handler) on a free loopback port, one per test session.

Each test gets its own database name on that server, so tests never see each other's documents.
"""

from __future__ import annotations

import os
import uuid

import pymongo
import pytest

from firegen.db.embedded.install import install_ferretdb
from firegen.db.embedded.server import EmbeddedServer, free_port

FIREGEN_ENV = ("FIREGEN_MONGO_URI", "FIREGEN_LAUNCHPAD", "FIREGEN_HOME", "FW_CONFIG_FILE")


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory):
    """A running FerretDB server; yields it (``.uri``) and stops it at the end of the session."""
    install_ferretdb()
    server = EmbeddedServer(tmp_path_factory.mktemp("ferretdb"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db_name():
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mongo_db(ferretdb, db_name):
    """A fresh pymongo Database on the session's FerretDB, dropped afterwards."""
    client = pymongo.MongoClient(ferretdb.uri, serverSelectionTimeoutMS=5000)
    yield client[db_name]
    client.drop_database(db_name)
    client.drop_database(db_name + "_archive")  # finished iterations' Fireworks (db/fireworks_archive.py)
    client.close()


@pytest.fixture
def launchpad(ferretdb, db_name):
    """A reset FireWorks LaunchPad on its own database of the session's FerretDB."""
    from fireworks import LaunchPad

    lp = LaunchPad(host=ferretdb.uri + db_name, name=db_name, uri_mode=True, strm_lvl="ERROR")
    lp.reset("", require_password=False)
    yield lp
    lp.connection.drop_database(db_name)
    lp.connection.drop_database(db_name + "_archive")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Run in an empty working directory with no firegen/FireWorks database settings inherited."""
    for name in FIREGEN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return {k: v for k, v in os.environ.items() if k not in FIREGEN_ENV}
