"""Where each item of a batch answered item by item (Elasticsearch _bulk) stands, for
delivery.py's _settle_items."""

from __future__ import annotations

from ..errors import FatalError, Side
from .base import Outcome

SIDE = Side.SIEM


class ItemLedger:
    """Where each item of one batch stands, by its position in the batch: taken, refused for
    good (with the intake's reason), or still to be sent."""

    def __init__(self, n: int) -> None:
        self.taken = [False] * n
        self.refused: dict[int, str] = {}
        self.reason = ""  # the last answer's words on the items to send again

    def read(self, sent: list[int], answer: Outcome) -> None:
        """The answer to the items at positions ``sent`` (in request order)."""
        if answer.items_answered != len(sent):
            raise FatalError(
                f"SIEM answered {answer.items_answered} item(s) for {len(sent)} sent: the "
                "items not yet taken are not counted as delivered (the next run sends them "
                "again); check siem.url",
                side=SIDE,
            )
        again = set(answer.retry_items)
        refused = dict(answer.refused_items)
        for index, position in enumerate(sent):
            if index in refused:
                self.refused[position] = refused[index]
            elif index not in again:
                self.taken[position] = True
        self.reason = answer.reason

    def take(self, sent: list[int]) -> None:
        for position in sent:
            self.taken[position] = True

    def first_refused(self) -> tuple[int, str] | None:
        if not self.refused:
            return None
        position = min(self.refused)
        return position, self.refused[position]

    def to_retry(self) -> list[int]:
        """The positions still to send that precede the first refused item."""
        refused = self.first_refused()
        end = refused[0] if refused else len(self.taken)
        return [p for p in range(end) if not self.taken[p]]

    def taken_prefix(self) -> int:
        """How many items from the start of the batch are taken."""
        for position, taken in enumerate(self.taken):
            if not taken:
                return position
        return len(self.taken)
