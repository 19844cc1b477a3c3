"""Which users a chat server serves, on Kafka: :class:`tidings.chat.ports.Ownership`."""

from __future__ import annotations

from collections.abc import Callable

from tidings.bus.partitioning import partition_for_user
from tidings.cluster.membership import MembershipView

__all__ = ["PartitionOwnership"]


class PartitionOwnership:
    """A user is served by the owner of their inbox partition.

    ``owns_partition`` is this server's answer (``KafkaBus.owns_partition``: the consumer
    group's current assignment), ``partition_count`` the inbox topic's partition count
    (``lambda: bus.partition_count``), and the view says who owns the others.
    """

    def __init__(
        self,
        owns_partition: Callable[[int], bool],
        partition_count: Callable[[], int],
        view: MembershipView,
    ) -> None:
        self._owns_partition = owns_partition
        self._partition_count = partition_count
        self._view = view

    def partition_of(self, user_id: int) -> int:
        """The inbox partition of ``user_id``."""
        return partition_for_user(user_id, self._partition_count())

    def owns(self, user_id: int) -> bool:
        """Whether this server owns ``user_id``'s inbox partition now."""
        return self._owns_partition(self.partition_of(user_id))

    def owner_url(self, user_id: int) -> str | None:
        """The URL of the live server owning ``user_id``'s partition, or None if none is known."""
        return self._view.owner_url(self.partition_of(user_id))

    def fallback_url(self) -> str | None:
        """Where to send a client whose partition has no known owner
        (:meth:`MembershipView.any_url`)."""
        return self._view.any_url()
