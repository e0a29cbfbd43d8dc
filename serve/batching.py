"""Micro-batching: requests that reach one worker at the same time are answered by one call.

A gunicorn worker answers each HTTP request on its own thread. Scored alone, a user's request
is a matrix-vector product that reads every item embedding (25 MB for 50,000 items x 128
dimensions) to produce one row of scores; eight such requests scored together read the
embeddings once and cost about twice one request, not eight times (benchmarks/NOTES.md,
"Micro-batching"). :class:`MicroBatcher` turns concurrent calls into such batches:

- a call that finds nobody computing becomes the *leader*: it takes every request waiting
  (its own included, up to ``max_requests``), answers them with one call of ``answer`` (one
  matrix product and one top-k per request type) and hands each caller its own answers, in
  order;
- a call that arrives while a leader computes waits; when that batch ends, the first waiting
  thread to wake leads the next batch with everything that queued meanwhile.

A leader waits (at most ``wait_seconds``) only until as many requests are waiting as the
previous batch held: a lone client never waits, and under load the callers that just got
their answers have time to send their next requests and join the batch instead of each
starting a batch of one. Bodies of ``max_requests`` records or more (batch transform's
MultiRecord bodies) are already batches: they are answered directly, on their own thread.

The answers are those of one call of ``answer`` with the callers' requests concatenated; each
row of a top-k search depends only on its own request, so a request gets the answer it would
get alone, up to the last bit of float32 rounding (BLAS kernels for 1-3 rows and for more
rows may round a dot product differently: at most 3e-7 for scores near 1).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from mfrec.serve.requests import Recommendation, Request

logger = logging.getLogger(__name__)

MAX_REQUESTS = 64  # records per batch; larger bodies are answered on their own
WAIT_SECONDS = 0.002  # see MicroBatcher; measured in benchmarks/NOTES.md, "Micro-batching"


class _Ticket:
    """One caller's requests and, once computed, its answers (or the exception raised)."""

    __slots__ = ("requests", "answers", "error")

    def __init__(self, requests: Sequence[Request]) -> None:
        self.requests = requests
        self.answers: list[Recommendation] | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.answers is not None or self.error is not None


class MicroBatcher:
    """Answers concurrent calls together (see the module docstring).

    Parameters
    ----------
    answer : callable, list of Request -> list of Recommendation (same length, same order)
    max_requests : int
        Most requests in one batch; a call with this many or more is answered directly.
    wait_seconds : float
        How long a leader may wait for as many requests as the previous batch held (0: never
        waits).
    """

    def __init__(
        self,
        answer: Callable[[list[Request]], list[Recommendation]],
        max_requests: int = MAX_REQUESTS,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._answer = answer
        self.max_requests, self.wait_seconds = max_requests, wait_seconds
        self._pending: list[_Ticket] = []
        self._busy = False
        self._expected = 1  # requests in the previous batch
        lock = threading.Lock()
        self._changed = threading.Condition(lock)  # a batch ended: waiting callers look again
        self._arrived = threading.Condition(lock)  # a request came: a waiting leader looks again
        self.batches = 0  # batches computed, and requests in them: for tests and logs
        self.batched_requests = 0

    def __call__(self, requests: Sequence[Request]) -> list[Recommendation]:
        """The answers to ``requests``, in order, computed with whatever else is waiting."""
        if len(requests) >= self.max_requests or not requests:
            return self._answer(list(requests))
        ticket = _Ticket(requests)
        with self._changed:
            self._pending.append(ticket)
            if self._waiting() >= self._expected:  # what a waiting leader waits for
                self._arrived.notify()
            while self._busy and not ticket.done:
                self._changed.wait()
            leads = not ticket.done
            self._busy = self._busy or leads
        if leads:
            try:
                self._lead(ticket)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
        if ticket.error is not None:
            raise ticket.error
        return ticket.answers  # type: ignore[return-value]

    def _lead(self, ticket: _Ticket) -> None:
        """Compute batches until ``ticket`` is answered."""
        while not ticket.done:
            with self._changed:
                deadline = time.monotonic() + self.wait_seconds
                while self._waiting() < self._expected:
                    if (left := deadline - time.monotonic()) <= 0:
                        break
                    self._arrived.wait(left)
                batch, total = [], 0
                while self._pending and (
                    not batch or total + len(self._pending[0].requests) <= self.max_requests
                ):
                    batch.append(self._pending.pop(0))
                    total += len(batch[-1].requests)
                self._expected = total
            if batch:
                self._run(batch)
            with self._changed:
                self._changed.notify_all()

    def _waiting(self) -> int:
        return min(self.max_requests, sum(len(t.requests) for t in self._pending))

    def _run(self, batch: list[_Ticket]) -> None:
        """Answer ``batch`` in one call; if that call raises, each ticket alone, so that an
        exception reaches only the caller whose requests raised it."""
        requests = [request for ticket in batch for request in ticket.requests]
        try:
            answers = self._answer(requests)
        except Exception as exc:  # noqa: BLE001 - handed to the caller it belongs to
            if len(batch) == 1:
                batch[0].error = exc
                return
            logger.warning("a batch of %d calls failed; answering each alone", len(batch))
            for ticket in batch:
                self._run([ticket])
            return
        self.batches += 1
        self.batched_requests += len(requests)
        start = 0
        for ticket in batch:
            ticket.answers = answers[start : start + len(ticket.requests)]
            start += len(ticket.requests)
