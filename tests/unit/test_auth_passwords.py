"""argon2 in a bounded pool: memory stays bounded under a login flood."""

from __future__ import annotations

import asyncio

from tidings.auth import Passwords, PasswordsBusy


async def test_password_checks_run_in_a_bounded_pool_and_a_flood_is_refused() -> None:
    passwords = Passwords(time_cost=1, memory_kib=8192, workers=2, waiting=3)
    stored = await passwords.hash("correct horse")
    results = await asyncio.gather(
        *(passwords.verify(stored, "correct horse") for _ in range(12)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, PasswordsBusy)]
    assert results[:5] == [True] * 5  # 2 running + 3 waiting
    assert len(refused) == 7
    assert passwords.in_use == 0
    assert await passwords.verify(stored, "wrong") is False
    passwords.close()
