"""benchmarks/faults.py on a stand-in matrix of a few instant tests (a few seconds): the rows cases record with
fault_helpers.record_outcome, and pytest's own result for the tests that failed, were skipped or recorded none."""

from __future__ import annotations

import textwrap

import _bench
import faults

STAND_IN = f"""
import sys
import pytest
sys.path[:0] = [{str(_bench.REPO / "tests")!r}, {str(_bench.REPO / "tests" / "faults")!r}]
from fault_helpers import record_outcome


def test_survives():
    record_outcome("SIGKILL of something", True, {{"labeled": 18, "labels_lost": 0, "labels_duplicated": 0}}, "rerun once")


@pytest.mark.slow
def test_slow_one_survives():
    record_outcome("a slow case", True, {{"labeled": 20, "labels_lost": 0, "labels_duplicated": 0}})


def test_fails():
    assert 1 + 1 == 3, "the campaign did not heal"


def test_records_then_fails():
    record_outcome("recorded, then a later check failed", True, {{"labeled": 5, "labels_lost": 0,
                                                                  "labels_duplicated": 1}})
    raise AssertionError("a label written twice")


def test_records_nothing():
    pass


@pytest.mark.skip(reason="no network namespaces here")
def test_skipped():
    pass
"""


def test_the_table_takes_recorded_rows_and_pytests_own_results(tmp_path):
    (tmp_path / "matrix").mkdir()
    (tmp_path / "matrix" / "test_stand_in.py").write_text(textwrap.dedent(STAND_IN))
    results, code = faults.run_matrix(tmp_path / "matrix", workdir=tmp_path / "out", quiet=True)
    assert code == 1  # pytest's: two tests failed
    assert [r["nodeid"].split("::")[1] for r in results] == [
        "test_survives", "test_slow_one_survives", "test_fails", "test_records_then_fails", "test_records_nothing",
        "test_skipped"]  # slow ones run too
    rows = {row["nodeid"].split("::")[1]: row for row in faults.table_rows(results)}
    assert rows["test_survives"] | {"wall s": 0} == {
        "case": "SIGKILL of something", "survived": "yes", "lost": 0, "dup": 0, "labeled": 18, "wall s": 0,
        "note": "rerun once", "nodeid": results[0]["nodeid"]}
    assert rows["test_slow_one_survives"]["case"] == "a slow case" and rows["test_slow_one_survives"]["survived"] == "yes"
    failed = rows["test_fails"]
    assert failed["survived"] == "no" and failed["lost"] is None and "the campaign did not heal" in failed["note"]
    late = rows["test_records_then_fails"]
    assert late["case"] == "recorded, then a later check failed" and late["survived"] == "no" and late["dup"] == 1
    assert "a label written twice" in late["note"]
    assert rows["test_records_nothing"]["survived"] == "yes"
    assert "no figures recorded" in rows["test_records_nothing"]["note"]
    assert rows["test_skipped"]["survived"] == "skipped" and "no network namespaces here" in rows["test_skipped"]["note"]
    table = faults.render(list(rows.values()))
    assert table.splitlines()[0].split() == ["case", "survived", "lost", "dup", "labeled", "wall", "s", "note"]
    assert len(table.splitlines()) == 2 + 6
