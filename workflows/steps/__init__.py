"""Pure science steps (train, explore, select, label): plain inputs and outputs, no FireWorks, no database."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from firegen.campaign.errors import FiregenError


def log_tail(source: str | bytes | Path | Sequence[Path] | None, n_lines: int | None = 30,
             max_chars: int | None = None) -> str:
    """The end of a program's log, for error messages.

    Args:
        source: the program's output (text or bytes), one log file, or several (each then headed by
            ``[file name]``); unreadable or missing files are left out.
        n_lines: keep the last lines only (None: all).
        max_chars: then keep the last characters only, marked with a leading ``…`` (None: all).
    """
    if source is None:
        return ""
    if isinstance(source, (str, bytes)):
        text = source.decode(errors="replace") if isinstance(source, bytes) else source
        lines = text.strip().splitlines()
        text = "\n".join(lines if n_lines is None else lines[-n_lines:])
        return text if max_chars is None or len(text) <= max_chars else "…" + text[-max_chars:]
    several = not isinstance(source, Path)
    chunks = []
    for path in ([Path(p) for p in source] if several else [source]):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        if lines:
            body = "\n".join(lines if n_lines is None else lines[-n_lines:])
            chunks.append(f"[{path.name}]\n{body}" if several else body)
    return "\n".join(chunks)


class StepError(FiregenError, RuntimeError):
    """A science program failed; ``log_tail`` holds the end of its log (also in the message).

    ``transient``: the program was killed from outside (a signal: the OOM killer, a preempted node),
    so running it again as it is may succeed; otherwise the failure is fatal.
    """

    def __init__(self, message: str, log_path: Path | None = None, log_tail: str = "", transient: bool = False):
        self.transient = transient
        self.log_path = log_path
        self.log_tail = log_tail
        text = message
        if log_path is not None:
            text += f" (log: {log_path})"
        if log_tail:
            text += "\n--- last lines of the log ---\n" + log_tail
        super().__init__(text)
