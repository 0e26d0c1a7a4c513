"""FireWorks FireTasks and workflow builders."""

import logging

# Claim the root logger before dpdata's cp2kdata plugin does (it calls logging.basicConfig(level=INFO)
# on import, which repeats every FireWorks line in worker logs with a "CP2KDATA|" prefix).
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
