"""The reconnect policy of a :class:`~._connection.ChatConnection`, without I/O.

docs/protocol.md, "Reconnecting", is the spec. The connection runs attempts; after each
one it tells :meth:`Supervisor.after` how the attempt ended (an :class:`Ended`, with the
time it ended on the connection's clock), and gets back what to do next: a :class:`Retry`
(wait ``delay`` seconds, then, if ``discover``, ask ``/v1/discover`` for the url, else
connect to ``url``) or a :class:`GiveUp`. It reports what discover answered with
:meth:`Supervisor.discovered`. The supervisor owns the counts and windows that the
decisions depend on; tests drive it with made-up attempts and times.

- a lost connection: a :class:`~._backoff.Backoff` delay (full jitter, capped), then
  discover; after ``max_attempts`` failed attempts in a row (no ``welcome``), give up;
- ``redirect{chat_url}``: connect there at once (with a backoff delay if redirects
  repeat; more than :data:`MAX_REDIRECTS` in a row without a ``welcome``: give up);
- ``reconnect{after_ms}``: wait until then, then discover (or, with ``same_url``, the
  same url again); failed attempts in the ``restart_window`` after that retry with the
  restart backoff, and with ``same_url`` at the same url up to ``same_url_retries`` times;
- a connection that lasted ``stable_after`` seconds resets the backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._backoff import RESTART_WINDOW_S, Backoff, restart_backoff

__all__ = [
    "MAX_REDIRECTS",
    "SAME_URL_RETRIES",
    "Ended",
    "GiveUp",
    "Retry",
    "Supervisor",
]

SAME_URL_RETRIES = 5  # failed attempts at the same url after reconnect{same_url}, then discover
MAX_REDIRECTS = 10


@dataclass(frozen=True, slots=True)
class Ended:
    """How one attempt ended, at ``now`` (seconds on the connection's monotonic clock)."""

    now: float
    welcomed_at: float | None = None  # when the server's welcome came, if it did
    redirect_to: str | None = None  # redirect{chat_url}
    reconnect_at: float | None = None  # reconnect{after_ms}: when to go
    same_url: bool = False  # ... and come back to the same url, no discover
    error: BaseException | None = None  # why the connection ended, if it failed


@dataclass(frozen=True, slots=True)
class Retry:
    """Wait ``delay`` seconds, then connect to ``url`` (after asking discover, if
    ``discover``: its answer replaces ``url``). ``note`` says why, for the log."""

    url: str
    delay: float
    discover: bool
    note: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop reconnecting: the connection fails with ``reason`` (caused by ``error``)."""

    reason: str
    error: BaseException | None = None


class Supervisor:
    """Decides, attempt after attempt, where and when the connection tries next."""

    def __init__(
        self,
        chat_url: str,
        *,
        backoff: Backoff | None = None,
        restart: Backoff | None = None,
        restart_window: float = RESTART_WINDOW_S,
        same_url_retries: int = SAME_URL_RETRIES,
        max_attempts: int | None = None,
        stable_after: float = 10.0,
        max_redirects: int = MAX_REDIRECTS,
    ) -> None:
        self.url = chat_url
        self.backoff = backoff if backoff is not None else Backoff()
        self.restart = restart if restart is not None else restart_backoff()
        self._restart_window = restart_window
        self._same_url_retries = same_url_retries
        self._max_attempts = max_attempts
        self._stable_after = stable_after
        self._max_redirects = max_redirects
        self.failed = 0  # attempts in a row that got no welcome (redirects aside)
        self.redirects = 0  # redirects in a row without a welcome
        self._restart_until: float | None = None  # after a reconnect{after_ms}: briskly
        self._same_url = False  # ... and, if it said so, at the same url (no discover)
        self._same_url_failed = 0  # attempts at that url that failed since

    def discovered(self, url: str) -> None:
        """Discover answered (or failed and the caller kept the url): connect there next."""
        self.url = url

    def after(self, attempt: Ended) -> Retry | GiveUp:
        """What to do after ``attempt`` ended."""
        if attempt.welcomed_at is not None:
            self.failed = self.redirects = self._same_url_failed = 0
            self._restart_until, self._same_url = None, False
            if attempt.now - attempt.welcomed_at >= self._stable_after:
                self.backoff.reset()
        if attempt.redirect_to is not None:
            return self._redirected(attempt.redirect_to)
        if attempt.reconnect_at is not None:
            return self._draining(attempt)
        return self._lost(attempt)

    def _redirected(self, to: str) -> Retry | GiveUp:
        self.redirects += 1
        if self.redirects > self._max_redirects:
            return GiveUp(f"{self.redirects} redirects in a row, last to {self.url}")
        note = f"redirected from {self.url} to {to}"
        self.url = to
        delay = self.backoff.next_delay() if self.redirects > 1 else 0.0
        return Retry(to, delay, discover=False, note=note)

    def _draining(self, attempt: Ended) -> Retry:
        assert attempt.reconnect_at is not None
        delay = max(0.0, attempt.reconnect_at - attempt.now)
        # The server is expected back (or elsewhere) right away: if the next attempts
        # fail, it is restarting, so they retry briskly for a while.
        self._restart_until = attempt.now + delay + self._restart_window
        self._same_url, self._same_url_failed = attempt.same_url, 0
        self.restart.reset()
        note = f"server draining; reconnecting in {delay:.3f}s"
        return Retry(self.url, delay, discover=not self._same_url, note=note)

    def _lost(self, attempt: Ended) -> Retry | GiveUp:
        if attempt.welcomed_at is None:
            self.failed += 1
            if self._max_attempts is not None and self.failed >= self._max_attempts:
                return GiveUp(
                    f"could not connect to {self.url} ({self.failed} attempts): {attempt.error!r}",
                    attempt.error,
                )
        restarting = self._restart_until is not None and attempt.now < self._restart_until
        if restarting:
            delay = self.restart.next_delay()
        else:
            delay = self.backoff.next_delay()
            self._same_url = False
        note = f"connection to {self.url} lost ({attempt.error!r}); retry in {delay:.3f}s"
        if self._same_url:
            self._same_url_failed += 1
            if self._same_url_failed > self._same_url_retries:
                # The restart in place did not come back here: ask where to go.
                note = f"{self.url} not back after a restart; discovering; retry in {delay:.3f}s"
                self._same_url = False
        return Retry(self.url, delay, discover=not self._same_url, note=note)
