#!/usr/bin/env bash
# The README's main job: a real campaign on the embedded database, start to finish.
# Na3OCl anti-perovskite (2x2x2, 40 atoms) labeled with tblite GFN1-xTB, a committee of 4 DeePMD
# models, LAMMPS exploration at 300/600 K, until 95 % of the frames are accurate (at most 8 iterations, under
# 15 minutes on 2 idle cores). Set FIREGEN_MAIN_CONFIG to run
# another campaign (e.g. configs/cu_emt.yaml, EMT labels, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
config=${FIREGEN_MAIN_CONFIG:-configs/na3ocl_xtb.yaml}
firegen validate "$config"
firegen run "$config" --timeout 1800 --stop-db
