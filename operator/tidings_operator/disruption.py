"""Failover drills: a chat server lost, and how long its clients took to come back.

A *disruption* is a chat pod that was ready and then went away — deleted, evicted by a
node drain, crashed, or no longer ready — without the operator asking for it (pods the
operator replaces in a rollout, or removes when scaling down, are planned and are not
reported here). Its *clients* are the connections it last reported while not draining;
the cluster has *recovered* when the total reported connections are back to
``RECOVERED_FRACTION`` of the total before the loss. The operator stops waiting for
that after :func:`give_up_after` seconds and says so.

Pure: the caller passes the pods it saw on the previous and the current look, and times
in seconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace

__all__ = [
    "RECOVERED_FRACTION",
    "Disruption",
    "PodSeen",
    "give_up_after",
    "lost_pods",
    "progress",
    "start",
]

RECOVERED_FRACTION = 0.99


@dataclass(frozen=True, slots=True)
class PodSeen:
    uid: str
    ready: bool
    terminating: bool


@dataclass(frozen=True, slots=True)
class Disruption:
    pod: str
    at: float
    clients: int
    connections_before: int
    recovered_at: float | None = None
    message: str = ""
    # "Lost" (not the operator's doing) or "DrainRequested" (tidings.dev/drain).
    cause: str = "Lost"

    @property
    def what(self) -> str:
        return "drained on request" if self.cause == "DrainRequested" else "lost"

    @property
    def recovery_seconds(self) -> float | None:
        if self.recovered_at is None:
            return None
        return round(max(0.0, self.recovered_at - self.at), 1)


def give_up_after(drain_budget_s: float) -> float:
    """How long to wait for the clients to come back: 10 drain budgets, at least 5 min."""
    return max(300.0, 10 * drain_budget_s)


def lost_pods(
    previous: Mapping[str, PodSeen],
    current: Mapping[str, PodSeen],
    *,
    planned: Collection[str],
    reported: Collection[str],
) -> list[tuple[str, str]]:
    """``(pod name, uid)`` of the pods that were ready and are now lost, unplanned.

    Lost: gone, replaced by a new pod of the same name, terminating, or not ready.
    ``planned`` are pod names the operator is removing itself; ``reported`` uids that
    were reported (or planned) already.
    """
    out: list[tuple[str, str]] = []
    for name, before in sorted(previous.items()):
        if not before.ready or before.terminating or before.uid in reported:
            continue
        if name in planned:
            continue
        now = current.get(name)
        if now is None or now.uid != before.uid or now.terminating or not now.ready:
            out.append((name, before.uid))
    return out


def start(
    pod: str,
    *,
    at: float,
    clients: int,
    connections_before: int,
    ongoing: Disruption | None,
    now: float,
    drain_budget_s: float,
    cause: str = "Lost",
) -> Disruption:
    """A new disruption. One that comes while another is still recovering keeps the
    earlier baseline: recovered means back to where the cluster was before both."""
    if (
        ongoing is not None
        and ongoing.recovered_at is None
        and now - ongoing.at < give_up_after(drain_budget_s)
    ):
        connections_before = max(connections_before, ongoing.connections_before)
    what = "drained on request" if cause == "DrainRequested" else "lost"
    return Disruption(
        pod,
        at,
        clients,
        connections_before,
        message=f"{pod} {what} with {clients} clients; waiting for them to come back",
        cause=cause,
    )


def progress(
    disruption: Disruption,
    *,
    total: int | None,
    now: float,
    drain_budget_s: float,
    reached_at: Callable[[float], float | None] | None = None,
) -> Disruption:
    """The disruption with the current total taken into account. ``reached_at(threshold)``:
    when the servers' own records first showed that many connections (recovered then,
    not when this look noticed it)."""
    if disruption.recovered_at is not None:
        return disruption
    window = give_up_after(drain_budget_s)
    if now - disruption.at > window:
        message = (
            f"connections did not come back to {disruption.connections_before} within "
            f"{window:.0f}s; stopped waiting"
        )
        return disruption if disruption.message == message else replace(disruption, message=message)
    threshold = RECOVERED_FRACTION * disruption.connections_before
    if total is not None and total >= threshold:
        when = reached_at(threshold) if reached_at is not None else None
        at = min(now, when) if when is not None else now
        recovered = replace(disruption, recovered_at=max(at, disruption.at))
        return replace(
            recovered,
            message=(
                f"{disruption.pod} {disruption.what} with {disruption.clients} clients; "
                "connections back to "
                f"{total} of {disruption.connections_before} after "
                f"{recovered.recovery_seconds}s"
            ),
        )
    return disruption
