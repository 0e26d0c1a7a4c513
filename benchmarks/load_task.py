"""The FireTask of ``load.py``: each execution writes one record to the LaunchPad's database.

A worker imports this module by name (``load_task.RecordExecution``), so ``load.py`` starts its workers with
``benchmarks/`` on ``PYTHONPATH``. The record is the evidence the benchmark counts from: the Firework's job
token (set when it was queued), a token of its own for this execution (a second execution of the same
Firework is a second record, never an overwrite), the FWorker's name, the process and the times.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from fireworks import FiretaskBase, FWAction, explicit_serialize

#: The collection of execution records, beside FireWorks' own in the LaunchPad's database.
COLLECTION = "load_executions"


@explicit_serialize
class RecordExecution(FiretaskBase):
    """Record this execution (job token, execution token, worker, pid, start and end), after ``seconds`` of sleep.

    The Firework's spec must ask for ``_add_launchpad_and_fw_id`` and ``_add_fworker`` (the Rocket then hands the
    task its LaunchPad, Firework id and FWorker).
    """

    required_params = ["job"]
    optional_params = ["seconds"]

    def run_task(self, fw_spec):
        start = time.time()
        if self.get("seconds"):
            time.sleep(float(self["seconds"]))
        token = uuid.uuid4().hex
        self.launchpad.db[COLLECTION].insert_one({
            "_id": token, "job": self["job"], "fw_id": self.fw_id, "worker": self.fworker.name,
            "host": socket.gethostname(), "pid": os.getpid(), "start": start, "end": time.time()})
        return FWAction(stored_data={"execution": token})
