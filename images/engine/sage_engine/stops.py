"""Stop sequences over streamed text: emit what is safe, hold back what might become a stop.

Text arrives in pieces (one decoded token at a time). A stop sequence may straddle pieces, so
the matcher keeps back the longest tail that is a prefix of some stop sequence, and truncates the
output at the first complete match.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StopMatcher:
    stops: list[str]
    _pending: str = ""
    stopped: bool = False
    emitted: list[str] = field(default_factory=list)

    def feed(self, piece: str) -> str:
        """Add generated text; returns the text now safe to send to the client."""
        if self.stopped:
            return ""
        text = self._pending + piece
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            self._pending = ""
            return self._emit(text[:cut])
        hold = self._held_tail(text)
        self._pending = text[len(text) - hold :] if hold else ""
        return self._emit(text[: len(text) - hold])

    def flush(self) -> str:
        """Generation ended without a stop: release whatever was held back."""
        rest, self._pending = self._pending, ""
        return self._emit(rest) if not self.stopped else ""

    def text(self) -> str:
        return "".join(self.emitted)

    def _emit(self, text: str) -> str:
        if text:
            self.emitted.append(text)
        return text

    def _first_stop(self, text: str) -> int | None:
        positions = [text.find(stop) for stop in self.stops]
        found = [p for p in positions if p >= 0]
        return min(found) if found else None

    def _held_tail(self, text: str) -> int:
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[len(text) - size :]):
                    longest = size
                    break
        return longest
