"""Pure science steps (train, explore, select, label): plain inputs and outputs, no FireWorks, no database."""

from __future__ import annotations

from pathlib import Path


class StepError(RuntimeError):
    """A science program failed; ``log_tail`` holds the end of its log (also in the message)."""

    def __init__(self, message: str, log_path: Path | None = None, log_tail: str = ""):
        self.log_path = log_path
        self.log_tail = log_tail
        text = message
        if log_path is not None:
            text += f" (log: {log_path})"
        if log_tail:
            text += "\n--- last lines of the log ---\n" + log_tail
        super().__init__(text)
