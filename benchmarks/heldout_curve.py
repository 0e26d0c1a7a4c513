#!/usr/bin/env python
"""Every iteration's committee of a finished fcc-Cu campaign, scored on the EMT held-out set of
``label_efficiency.py``: is the campaign learning, whatever its accurate ratio says?

For each iteration: the labels its committee was trained on, the accurate ratio on its own exploration (from
the iteration's counts), the force RMSE of the committee's mean prediction on the held-out frames (eV/Å), and
the share of held-out frames at 300 K and at 600 K whose max force deviation is below ``--f-lo``.

Usage (from the repository root; the campaign's embedded database is started and stopped here)::

    .venv/bin/python benchmarks/heldout_curve.py --home /tmp/cu/.firegen --campaign cu-emt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _bench  # noqa: E402
import label_efficiency  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", required=True, help="the campaign's FIREGEN_HOME (holds db/)")
    p.add_argument("--campaign", required=True)
    p.add_argument("--heldout-dir", default="/tmp/label-efficiency", help="where the held-out set is (built if missing)")
    p.add_argument("--f-lo", type=float, default=0.15, help="lower trust level (eV/Å)")
    args = p.parse_args(argv)
    import gridfs
    import pymongo
    from deepmd.infer import DeepPot

    env = {"FIREGEN_HOME": args.home, "PATH": str(_bench.VENV_BIN)}
    firegen = str(_bench.VENV_BIN / "firegen")
    subprocess.run([firegen, "db", "up"], env=env, cwd=args.home, check=True, capture_output=True)
    try:
        heldout = label_efficiency.HeldOut(label_efficiency.build_heldout(Path(args.heldout_dir)))
        uri = json.loads((Path(args.home) / "db" / "server.json").read_text())["uri"]
        db = pymongo.MongoClient(uri)["firegen"]
        bucket = gridfs.GridFSBucket(db, "blobs")
        work = Path(args.home) / "heldout-models"
        work.mkdir(exist_ok=True)
        half = len(heldout.energies) // 2  # the set holds the 300 K frames first, then the 600 K ones
        print(f"{'iteration':>9} {'labels':>6} {'own accurate %':>14} {'held-out RMSE f':>15} "
              f"{'held-out accurate 300 K / 600 K':>32}")
        for it in db.iterations.find({"campaign": args.campaign}).sort("index", 1):
            models = list(db.models.find({"campaign": args.campaign, "iteration": it["index"]}))
            if not models:
                continue
            preds = []
            for m in models:
                path = work / f"{it['index']}-{m['member']}.pb"
                with path.open("wb") as fh:
                    bucket.download_to_stream(m["file_id"], fh)
                out = DeepPot(str(path)).eval(heldout.coords, heldout.cells, heldout.types)
                preds.append(np.asarray(out[1]).reshape(len(heldout.energies), -1, 3))
            P = np.array(preds)
            mean = P.mean(0)
            rmse = float(np.sqrt(np.mean((mean.reshape(len(mean), -1) - heldout.forces) ** 2)))
            dev = np.sqrt(((P - mean) ** 2).sum(-1).mean(0)).max(-1)
            own = 100 * (it.get("ratios") or {}).get("accurate", float("nan"))
            labels = models[0]["n_train"] + models[0]["n_validation"]
            print(f"{it['index']:>9} {labels:>6} {own:>14.1f} {rmse:>15.3f} "
                  f"{np.mean(dev[:half] < args.f_lo):>15.2f} / {np.mean(dev[half:] < args.f_lo):.2f}")
    finally:
        subprocess.run([firegen, "db", "down"], env=env, cwd=args.home, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
