"""Pure helpers: structure hashing tolerance and credential masking."""

import pytest

from ase.build import bulk

from firegen.db.hashing import LENGTH_TOLERANCE, atoms_hash, dataset_hash
from firegen.db.uri import database_name, mask_secrets, mask_uri


def test_hash_ignores_noise_below_tolerance_and_sees_real_changes():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    noisy = atoms.copy()
    noisy.positions += LENGTH_TOLERANCE / 50
    noisy.positions[0] = noisy.positions[0] - LENGTH_TOLERANCE / 50  # keep one atom exact
    assert atoms_hash(atoms) == atoms_hash(atoms.copy())
    swapped = atoms.copy()
    swapped.symbols[0], swapped.symbols[1] = swapped.symbols[1], swapped.symbols[0]
    assert atoms_hash(swapped) != atoms_hash(atoms)
    strained = atoms.copy()
    strained.set_cell(atoms.cell * 1.001, scale_atoms=True)
    assert atoms_hash(strained) != atoms_hash(atoms)


def test_hash_wraps_atoms_at_the_cell_edge():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    edge = atoms.copy()
    edge.positions[0] = atoms.cell[0] * (1 - 1e-9)  # numerically the same site as the origin
    assert atoms_hash(edge) == atoms_hash(atoms)


def test_dataset_hash_is_order_free():
    assert dataset_hash(["b", "a", "a"]) == dataset_hash(["a", "b"])
    assert dataset_hash(["a"]) != dataset_hash(["a", "b"])


def test_mask_uri_hides_passwords_only():
    assert mask_uri("mongodb://alice:s3cret@db:27017/x") == "mongodb://alice:***@db:27017/x"
    assert mask_uri("mongodb+srv://bob:p%40ss@cluster.example/db") == "mongodb+srv://bob:***@cluster.example/db"
    assert mask_uri("mongodb://127.0.0.1:27017/") == "mongodb://127.0.0.1:27017/"
    text = "failed: mongodb://u:pw@h/x and mongodb://v:qq@k/y"
    assert "pw" not in mask_secrets(text) and "qq" not in mask_secrets(text)
    assert database_name("mongodb://u:p@h:1/firegen?authSource=admin") == "firegen"


@pytest.mark.parametrize("uri, password", [
    ("mongodb://alice:p@ss@db:27017/x", "p@ss"),                    # '@' typed without escaping
    ("mongodb://alice:pa/ss@db:27017/x", "pa/ss"),                  # '/' typed without escaping
    ("mongodb://alice:a:b/c@d@db/x?authSource=admin", "a:b/c@d"),    # all of them
    ("MONGODB://alice:Sh0ut@db/x", "Sh0ut"),                         # upper-case scheme
    ("MongoDB+SRV://alice:srvpw@cluster.example/x", "srvpw"),
    ("mongodb://db/x?tls=true&tlsCertificateKeyFilePassword=keypw", "keypw"),
    ("mongodb://u:pw1@db/x?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok9", "tok9"),
])
def test_mask_uri_never_shows_a_password_however_it_is_written(uri, password):
    masked = mask_uri(uri)
    assert password not in masked and "***" in masked
    assert masked.lower().startswith(uri.lower().split("://")[0] + "://")
    if "alice" in uri:
        assert "alice:***@" in masked  # the user name stays readable
    assert password not in mask_secrets(f"pymongo.errors.InvalidURI: bad {uri} (given)")


def test_mask_uri_keeps_what_is_no_secret():
    for uri in ("mongodb://db:27017/x?tls=true&tlsCAFile=/etc/ca.pem", "mongodb://alice@db/x?authSource=admin",
                "mongodb://127.0.0.1:27117/"):
        assert mask_uri(uri) == uri
    assert database_name("mongodb://h:1/") == "firegen"
