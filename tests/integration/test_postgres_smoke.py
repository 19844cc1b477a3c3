"""Smoke test: the test environment's PostgreSQL works with SQLAlchemy's async engine (asyncpg)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


async def test_create_insert_select_drop(testenv) -> None:  # type: ignore[no-untyped-def]
    engine = create_async_engine(testenv["TIDINGS_TEST_POSTGRES_URL"], connect_args={"timeout": 10})
    metadata = MetaData()
    table = Table(
        f"smoke_{uuid.uuid4().hex[:16]}",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("body", String(200), nullable=False),
    )
    try:
        async with asyncio.timeout(30):
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            try:
                async with engine.begin() as conn:
                    await conn.execute(
                        table.insert(), [{"id": 1, "body": "hello"}, {"id": 2, "body": "wörld"}]
                    )
                async with engine.connect() as conn:
                    rows = (await conn.execute(select(table).order_by(table.c.id))).all()
                    version = (await conn.exec_driver_sql("SHOW server_version")).scalar_one()
                assert [tuple(r) for r in rows] == [(1, "hello"), (2, "wörld")]
                assert int(str(version).split(".")[0]) >= 15
            finally:
                async with engine.begin() as conn:
                    await conn.run_sync(metadata.drop_all)
    finally:
        await engine.dispose()
