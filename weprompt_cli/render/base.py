"""What every answer stream shares: used as a context manager, it finishes on exit."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11


class FinishOnExit:
    """`with stream:` calls `finish()` on the way out, also on Ctrl-C, so a partial answer stays."""

    def finish(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish()
