"""What every long-lived thing the harness starts shares: used as a context manager, it is
stopped on the way out, and also when starting it failed half-way."""

from __future__ import annotations

from typing import Self


class Started:
    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
