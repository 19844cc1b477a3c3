"""The reconnect policy (docs/protocol.md, "Reconnecting") as decisions, with no socket:
made-up attempts and times in, where and when to try next out."""

from __future__ import annotations

import random

from tidings.client._backoff import Backoff
from tidings.client._supervisor import Ended, GiveUp, Retry, Supervisor

URL, OTHER = "ws://chat-0:8080", "ws://chat-1:8080"
LOST = ConnectionResetError("lost")


class Ceiling(random.Random):
    """Jitter that always draws the top of the window, so delays are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


def supervisor(**kwargs: object) -> Supervisor:
    kwargs.setdefault("backoff", Backoff(0.5, 30.0, rng=Ceiling()))
    kwargs.setdefault("restart", Backoff(0.5, 2.0, rng=Ceiling()))
    return Supervisor(URL, **kwargs)  # type: ignore[arg-type]


def retry(decision: Retry | GiveUp) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


def test_a_lost_connection_backs_off_and_asks_discover_each_time() -> None:
    s = supervisor()
    delays = []
    for n in range(5):
        decision = retry(s.after(Ended(now=float(n), error=LOST)))
        assert decision.discover
        delays.append(decision.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_the_url_discover_answers_is_where_the_next_attempt_goes() -> None:
    s = supervisor()
    retry(s.after(Ended(now=0.0, error=LOST)))
    s.discovered(OTHER)
    assert s.url == OTHER
    assert "chat-1" in retry(s.after(Ended(now=1.0, error=LOST))).note


def test_gives_up_after_max_attempts_without_a_welcome() -> None:
    s = supervisor(max_attempts=3)
    retry(s.after(Ended(now=0.0, error=LOST)))
    retry(s.after(Ended(now=1.0, error=LOST)))
    decision = s.after(Ended(now=2.0, error=LOST))
    assert isinstance(decision, GiveUp)
    assert "(3 attempts)" in decision.reason
    assert decision.error is LOST


def test_a_welcome_starts_the_count_of_failed_attempts_again() -> None:
    s = supervisor(max_attempts=3)
    retry(s.after(Ended(now=0.0, error=LOST)))
    retry(s.after(Ended(now=1.0, error=LOST)))
    retry(s.after(Ended(now=3.0, welcomed_at=2.0, error=LOST)))  # welcomed, then lost
    retry(s.after(Ended(now=4.0, error=LOST)))
    retry(s.after(Ended(now=5.0, error=LOST)))
    assert isinstance(s.after(Ended(now=6.0, error=LOST)), GiveUp)


def test_only_a_connection_that_lasted_stable_after_resets_the_backoff() -> None:
    s = supervisor(stable_after=10.0)
    assert retry(s.after(Ended(now=0.0, error=LOST))).delay == 0.5
    assert retry(s.after(Ended(now=1.0, error=LOST))).delay == 1.0
    # Welcomed, lost 5 s later: flapping, the backoff keeps growing.
    assert retry(s.after(Ended(now=8.0, welcomed_at=3.0, error=LOST))).delay == 2.0
    # Welcomed, lost after 10 s: stable, the backoff starts over.
    assert retry(s.after(Ended(now=30.0, welcomed_at=20.0, error=LOST))).delay == 0.5


def test_a_redirect_goes_there_at_once_and_repeated_ones_back_off() -> None:
    s = supervisor()
    first = retry(s.after(Ended(now=0.0, redirect_to=OTHER)))
    assert (first.url, first.delay, first.discover) == (OTHER, 0.0, False)
    second = retry(s.after(Ended(now=1.0, redirect_to=URL)))
    assert (second.url, second.delay, second.discover) == (URL, 0.5, False)
    assert s.url == URL


def test_more_than_ten_redirects_in_a_row_give_up() -> None:
    s = supervisor()
    for n in range(10):
        retry(s.after(Ended(now=float(n), redirect_to=OTHER if n % 2 else URL)))
    decision = s.after(Ended(now=10.0, redirect_to=OTHER))
    assert isinstance(decision, GiveUp)
    assert "11 redirects in a row" in decision.reason


def test_a_welcome_ends_a_run_of_redirects() -> None:
    s = supervisor()
    for n in range(10):
        retry(s.after(Ended(now=float(n), redirect_to=OTHER)))
    retry(s.after(Ended(now=11.0, welcomed_at=10.5, redirect_to=URL)))
    assert s.redirects == 1


def test_reconnect_waits_its_delay_then_discovers_and_failures_retry_briskly() -> None:
    s = supervisor(restart_window=30.0)
    drain = retry(s.after(Ended(now=100.0, welcomed_at=50.0, reconnect_at=103.0)))
    assert (drain.delay, drain.discover) == (3.0, True)
    # The server restarts: attempts refused during the window use the restart backoff,
    # capped at 2 s, instead of the usual one.
    delays = [retry(s.after(Ended(now=104.0 + n, error=LOST))).delay for n in range(4)]
    assert delays == [0.5, 1.0, 2.0, 2.0]
    # Past the window (103 + 30 s), the usual backoff again.
    assert retry(s.after(Ended(now=134.0, error=LOST))).delay == 0.5


def test_a_reconnect_delay_already_past_means_go_now() -> None:
    s = supervisor()
    assert retry(s.after(Ended(now=10.0, welcomed_at=1.0, reconnect_at=9.0))).delay == 0.0


def test_same_url_comes_back_without_discover_until_its_retries_run_out() -> None:
    s = supervisor(same_url_retries=2)
    back = retry(s.after(Ended(now=0.0, welcomed_at=-60.0, reconnect_at=1.0, same_url=True)))
    assert (back.url, back.discover) == (URL, False)
    assert not retry(s.after(Ended(now=2.0, error=LOST))).discover  # 1st failure: same url
    assert not retry(s.after(Ended(now=3.0, error=LOST))).discover  # 2nd
    third = retry(s.after(Ended(now=4.0, error=LOST)))  # not back: ask where to go
    assert third.discover
    assert "not back after a restart" in third.note
    assert retry(s.after(Ended(now=5.0, error=LOST))).discover


def test_same_url_ends_with_the_restart_window() -> None:
    s = supervisor(restart_window=5.0, same_url_retries=100)
    retry(s.after(Ended(now=0.0, welcomed_at=-60.0, reconnect_at=1.0, same_url=True)))
    assert not retry(s.after(Ended(now=2.0, error=LOST))).discover
    late = retry(s.after(Ended(now=7.0, error=LOST)))  # past 1 + 5 s
    assert late.discover
    assert late.delay == 0.5  # the usual backoff
