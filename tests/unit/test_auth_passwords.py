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


async def test_a_login_for_no_account_does_the_same_argon2_work_as_a_wrong_password() -> None:
    """So the time of the answer does not tell whether a username exists."""
    passwords = Passwords(time_cost=1, memory_kib=8192, workers=1, waiting=1)
    verified: list[str] = []
    hasher = passwords._hasher

    class Counting:
        def hash(self, password: str) -> str:
            return hasher.hash(password)

        def verify(self, password_hash: str, password: str) -> bool:
            verified.append(password_hash)
            return hasher.verify(password_hash, password)

    passwords._hasher = Counting()  # type: ignore[assignment]
    assert await passwords.verify_unknown("correct horse") is False
    assert await passwords.verify_unknown("battery staple") is False
    assert len(verified) == 2 and verified[0] == verified[1]  # one decoy hash, verified
    assert verified[0].startswith("$argon2id$")
    passwords.close()
