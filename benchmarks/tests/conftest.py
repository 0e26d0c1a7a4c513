"""The benchmark scripts are not a package: put ``benchmarks/`` and ``benchmarks/vs_dpgen/`` on the path.

Run with ``.venv/bin/python -m pytest benchmarks/tests -q`` (``tests/`` is the default test path).
"""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
for folder in (BENCH, BENCH / "vs_dpgen"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
