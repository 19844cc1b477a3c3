"""Search in the Cassandra message store: words indexed with SAI, queried per partition.

Cassandra 5.0's SAI has no tokenizing analyzer (``index_analyzer`` and the ``:``
operator arrive after 5.0), so the store tokenizes bodies itself into the ``terms`` set
(:func:`search_terms`: the rules of SQLite's ``unicode61``) and indexes it with SAI.
Every word of a query must match, as a whole word (SQLite's FTS5 also matches prefixes).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tidings.core.model import Message
from tidings.storage.cassandra.io_async import AsyncCql
from tidings.storage.cassandra.layout import COLUMNS, MAX_BIGINT, bucket_of, grouped, message_of

MAX_TERM_CHARS = 64  # longer words are indexed (and searched) by their first 64 chars
MAX_QUERY_TERMS = 8  # words beyond these are checked here instead of by the index


def search_terms(text: str) -> list[str]:
    """The distinct words of a text as stored and searched: runs of letters and digits,
    lower-cased, diacritics removed (SQLite's ``unicode61`` rules), in order of first use."""
    stripped = "".join(
        c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
    ).lower()
    spaced = "".join(c if c.isalnum() else " " for c in stripped)
    return list(dict.fromkeys(w[:MAX_TERM_CHARS] for w in spaced.split()))


class SearchPart:
    """The search half of :class:`~tidings.storage.cassandra.store.CassandraMessageStore`
    (a mixin: the store owns the connection, the keyspace and the bucket list)."""

    _cql: AsyncCql
    _ks: str
    _search_statements: dict[tuple[int, bool], Any]
    _buckets: Callable[[str, int], Awaitable[list[int]]]

    async def search(self, channel_ids: Sequence[str], query: str, limit: int) -> list[Message]:
        """Messages of the given channels with every word of ``query``, newest first.

        Buckets are searched newest first, all the channels' copies of a bucket at once;
        an id in an older bucket is always smaller, so the walk stops at the first bucket
        that fills ``limit``. Within one partition SAI returns rows in clustering order
        (newest first), so a per-partition LIMIT keeps the newest matches. A search that
        matches little walks every bucket of every channel: one indexed single-partition
        query each.
        """
        channels, words = list(dict.fromkeys(channel_ids)), search_terms(query)
        if not channels or not words or limit <= 0:
            return []
        listed = await self._cql.gather(self._buckets(c, bucket_of(MAX_BIGINT)) for c in channels)
        by_bucket = grouped(
            (bucket, channel)
            for channel, buckets in zip(channels, listed, strict=True)
            for bucket in buckets
        )
        found: list[Message] = []
        for bucket in sorted(by_bucket, reverse=True):
            pages = await self._cql.gather(
                self._search_partition(channel, bucket, words, limit)
                for channel in by_bucket[bucket]
            )
            found.extend(m for page in pages for m in page)
            if len(found) >= limit:
                break
        found.sort(key=lambda m: m.message_id, reverse=True)
        return found[:limit]

    async def _search_partition(
        self, channel_id: str, bucket: int, words: list[str], limit: int
    ) -> list[Message]:
        indexed, rest = words[:MAX_QUERY_TERMS], set(words[MAX_QUERY_TERMS:])
        statement = await self._search_statement(len(indexed), limited=not rest)
        params: list[Any] = [channel_id, bucket, *indexed]
        if not rest:
            params.append(limit)
        rows = await self._cql.rows(statement, params, what="search")
        found = [message_of(r) for r in rows]
        if rest:
            found = [m for m in found if rest <= set(search_terms(m.body))][:limit]
        return found

    async def _search_statement(self, terms: int, *, limited: bool) -> Any:
        key = (terms, limited)
        if key not in self._search_statements:
            contains = " AND ".join(["terms CONTAINS ?"] * terms)
            cql = (
                f"SELECT {COLUMNS} FROM {self._ks}.messages "
                f"WHERE channel_id = ? AND bucket = ? AND {contains}"
                + (" LIMIT ?" if limited else "")
            )
            prepared = (await self._cql.prepare({"search": cql}))["search"]
            self._search_statements[key] = prepared
        return self._search_statements[key]
