"""Deliver typed events to subscribers: the one bus deploys and drills both use.

The executor and the drill never print: they emit events, and subscribers (the rich views in
``orchestrator.render``, the journal recorder, the webhooks, tests) do what they want with
them. Subscribers are plain callables run synchronously on the event loop, in subscription
order, so a subscriber added first (the journal's) has seen an event before any view shows it.
``orchestrator.execute.events`` and ``orchestrator.drill.events`` define the events and the
bus each uses (`Bus` with its own policy for a failing subscriber).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

__all__ = ["Bus", "Subscriber"]

log = logging.getLogger(__name__)

E = TypeVar("E")

Subscriber = Callable[[E], None]


class Bus(Generic[E]):
    """Deliver events of type ``E`` to subscribers, in the order they subscribed.

    A subscriber that raises is logged and skipped (a broken view must not stop a run
    half-way), unless what it raised is one of `propagate`, which a subclass sets for failures
    the run must not outlive.
    """

    propagate: ClassVar[tuple[type[Exception], ...]] = ()
    what: ClassVar[str] = "event"

    def __init__(self, *subscribers: Subscriber[E]) -> None:
        self._subscribers: list[Subscriber[E]] = list(subscribers)

    def subscribe(self, subscriber: Subscriber[E]) -> None:
        """Add a subscriber; it sees every event emitted from now on."""
        self._subscribers.append(subscriber)

    def emit(self, event: E) -> None:
        """Hand ``event`` to every subscriber."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except self.propagate:
                raise
            except Exception:
                log.exception(
                    "%s subscriber %r failed on %s", self.what, subscriber, type(event).__name__
                )
