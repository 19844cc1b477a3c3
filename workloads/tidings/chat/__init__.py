"""The chat server's logic: the message path, delivery, receipts, presence, sync.

Written against the storage and bus interfaces and a :class:`Delivery` port that the
gateway implements, so tests drive it without sockets.
"""
