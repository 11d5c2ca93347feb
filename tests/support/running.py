"""The context-manager protocol of the servers tests start, written once.

`with Server(...) as server:` is `server.start()` … `server.close()`; a subclass says only how
it starts and stops (and, when closing means more than stopping, how it closes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self


class Running(ABC):
    """Something a test starts and must not leave running."""

    @abstractmethod
    def start(self) -> Self:
        """Start (or restart) and return self once usable."""

    @abstractmethod
    def stop(self) -> None:
        """Stop; a later start() may bring it back."""

    def close(self) -> None:
        """Stop for good (a subclass may also delete what it made)."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
