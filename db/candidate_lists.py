"""Which configurations each exploration of an iteration made candidates, keyed by ``_id``.

Selection needs the candidates of one iteration. Asked as ``{campaign, origin.iteration, status}``,
the embedded FerretDB reads and decodes every configuration of the database (about 2 ms per
32-atom configuration: 0.3 s at 140, growing with the campaign). An exploration therefore writes
the ids of its candidates, in frame order, to one small document of collection ``candidate_lists``
whose ``_id`` follows from (campaign, iteration, exploration task); select reads one such document
per task by ``_id`` and needs no query on ``configurations``.

Document: ``{_id, campaign, iteration, task, ids: [ObjectId, ...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from firegen.db.hashing import derived_id
from firegen.db.lookup import find_by_ids
from firegen.db.validation import validate_document

COLLECTION = "candidate_lists"


def list_id(campaign: str, iteration: int, task: str):
    """The ``_id`` of the candidate list of exploration ``task`` (``system|c<condition>``) of an iteration."""
    return derived_id("candidates", campaign, str(int(iteration)), task)


def store_candidates(db, campaign: str, iteration: int, task: str, ids: Sequence) -> None:
    """Write (or, for a rerun of the exploration, overwrite) the task's candidate ids."""
    doc = {"campaign": campaign, "iteration": int(iteration), "task": task, "ids": list(ids)}
    validate_document(COLLECTION, doc)
    db[COLLECTION].replace_one({"_id": list_id(campaign, iteration, task)}, doc, upsert=True)


def read_candidates(db, campaign: str, iteration: int, tasks: Iterable[str]) -> list | None:
    """The candidate ids of these exploration tasks, task by task (in the order given), each id once.

    Returns None when a task has no list (explored before the lists existed): the caller then asks
    ``configurations`` for the iteration's candidates instead.
    """
    tasks = list(tasks)
    docs = {d["task"]: d["ids"] for d in find_by_ids(db[COLLECTION], [list_id(campaign, iteration, t) for t in tasks],
                                                     {"task": 1, "ids": 1})}
    if any(t not in docs for t in tasks):
        return None
    return list(dict.fromkeys(i for t in tasks for i in docs[t]))


def iteration_candidates(configurations, iteration: int, stored: Sequence[tuple]) -> list:
    """The ids among ``stored`` (``(id, inserted)`` pairs of ``ResultsStore.add_configurations``) that
    are candidates of ``iteration``: those inserted now, and those an earlier attempt of the same
    exploration stored (a rerun after a crash) that are still candidates. A structure some other
    iteration found first stays that iteration's."""
    known = [i for i, inserted in stored if not inserted]
    ours = {d["_id"] for d in find_by_ids(configurations, known, {"origin.iteration": 1, "status": 1})
            if (d.get("origin") or {}).get("iteration") == iteration and d.get("status") == "candidate"}
    return list(dict.fromkeys(i for i, inserted in stored if inserted or i in ours))
