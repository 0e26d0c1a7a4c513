"""Pure helpers: structure hashing tolerance and credential masking."""

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
    assert database_name("mongodb://h:1/") == "firegen"
