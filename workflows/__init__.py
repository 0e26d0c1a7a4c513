"""FireWorks FireTasks and workflow builders."""

import logging


def claim_root_logger(level: int = logging.WARNING) -> None:
    """Install firegen's root log handler before dpdata's cp2kdata plugin does.

    cp2kdata calls ``logging.basicConfig(level=INFO)`` on import, after which every FireWorks line is
    repeated with a "CP2KDATA|" prefix. A root handler installed first makes that call a no-op; its
    level keeps records that loggers such as FireWorks' propagate at DEBUG/INFO out of the output.
    """
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        handler.setLevel(level)


claim_root_logger()
