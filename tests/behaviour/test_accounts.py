"""Sign-up, log-in, devices and authentication over HTTP."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from ._harness import (
    PASSWORD,
    Account,
    Deployment,
    befriend,
    error_code,
    http_client,
    login,
    make_token,
    new_account,
    signup,
    unique_name,
)


async def test_signup_returns_the_new_user(http: httpx.AsyncClient) -> None:
    username = unique_name("sign")
    response = await http.post(
        "/v1/users", json={"username": username, "password": PASSWORD, "display_name": "Ada L."}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["username"] == username
    assert body["display_name"] == "Ada L."
    assert isinstance(body["user_id"], str) and body["user_id"].isdigit()


async def test_signup_without_display_name_still_has_one(http: httpx.AsyncClient) -> None:
    body = await signup(http)
    assert isinstance(body["display_name"], str) and body["display_name"]


async def test_login_returns_a_session_for_a_new_device(http: httpx.AsyncClient) -> None:
    username = unique_name("login")
    user = await signup(http, username)
    response = await http.post(
        "/v1/sessions",
        json={
            "username": username,
            "password": PASSWORD,
            "device_name": "phone",
            "platform": "ios",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user_id"] == user["user_id"]
    assert body["device_id"].isdigit()
    assert isinstance(body["access_token"], str) and body["access_token"]
    assert isinstance(body["expires_at"], int)
    assert body["chat_url"].startswith(("ws://", "wss://"))


async def test_taken_username_is_409(http: httpx.AsyncClient) -> None:
    username = unique_name("dup")
    await signup(http, username)
    response = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
    assert response.status_code == 409
    assert error_code(response) == "username_taken"
    assert isinstance(response.json()["error"]["message"], str)


async def test_wrong_password_is_401_bad_credentials(http: httpx.AsyncClient) -> None:
    username = unique_name("badpw")
    await signup(http, username)
    response = await http.post(
        "/v1/sessions", json={"username": username, "password": "not the password"}
    )
    assert response.status_code == 401
    assert error_code(response) == "bad_credentials"


async def test_unknown_username_is_401_bad_credentials(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/sessions", json={"username": unique_name("ghost"), "password": PASSWORD}
    )
    assert response.status_code == 401
    assert error_code(response) == "bad_credentials"


ACCOUNT_FAILURES = 10  # login_failures_per_account's default


async def test_failed_logins_lock_the_account_for_a_while_even_for_the_right_password(
    http: httpx.AsyncClient,
) -> None:
    """Guessing stops after ACCOUNT_FAILURES wrong passwords: then every login of that
    account, the right password too, gets 429 rate_limited with Retry-After; another
    account from the same address still logs in."""
    username = unique_name("guessed")
    await signup(http, username)
    for _ in range(ACCOUNT_FAILURES):
        wrong = await http.post("/v1/sessions", json={"username": username, "password": "nope!"})
        assert wrong.status_code == 401, wrong.text
    right = await http.post("/v1/sessions", json={"username": username, "password": PASSWORD})
    assert right.status_code == 429, right.text
    assert error_code(right) == "rate_limited"
    assert 1 <= int(right.headers["Retry-After"]) <= 60
    assert 0 < right.json()["after_ms"] <= 60_000
    bystander = await new_account(http, "bystander")  # signs up and logs in
    assert bystander.token


async def test_failed_logins_count_on_every_api_process_together(server: Deployment) -> None:
    """A cluster's API processes share the counts (in the directory), so spreading the
    guesses over them gains nothing: ACCOUNT_FAILURES in all, then 429 on every one."""
    username = unique_name("spread")
    apis = [http_client(server, i) for i in range(len(server.api_urls))]
    try:
        await signup(apis[0], username)
        for n in range(ACCOUNT_FAILURES):
            wrong = await apis[n % len(apis)].post(
                "/v1/sessions", json={"username": username, "password": "nope!"}
            )
            assert wrong.status_code == 401, wrong.text
        for api in apis:
            right = await api.post(
                "/v1/sessions", json={"username": username, "password": PASSWORD}
            )
            assert right.status_code == 429, (str(api.base_url), right.text)
    finally:
        for api in apis:
            await api.aclose()


async def test_failed_logins_for_a_name_nobody_has_are_throttled_the_same(
    http: httpx.AsyncClient,
) -> None:
    """An unknown username fails like a wrong password, also in how it is throttled, so
    the answers do not tell which names exist."""
    ghost = unique_name("ghost")
    for _ in range(ACCOUNT_FAILURES):
        miss = await http.post("/v1/sessions", json={"username": ghost, "password": PASSWORD})
        assert miss.status_code == 401 and error_code(miss) == "bad_credentials"
    throttled = await http.post("/v1/sessions", json={"username": ghost, "password": PASSWORD})
    assert throttled.status_code == 429 and error_code(throttled) == "rate_limited"


@pytest.mark.parametrize(
    "name",
    ["Al\u202eecila", "Ali\u200bce", "Al\u2066ice\u2069", "Bob\u0007", "\u200b"],
    ids=["right-to-left-override", "zero-width-space", "bidi-isolate", "control", "only-invisible"],
)
async def test_a_display_name_that_could_pose_as_someone_else_is_422(
    http: httpx.AsyncClient, name: str
) -> None:
    response = await http.post(
        "/v1/users",
        json={"username": unique_name("poser"), "password": PASSWORD, "display_name": name},
    )
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_request"


async def test_a_display_name_is_stored_in_its_plain_form(http: httpx.AsyncClient) -> None:
    """NFKC: full-width letters and ligatures read as the plain ones, spaces trimmed."""
    body = await signup_with_name(http, "  \uff21lice \ufb01ne ")
    assert body["display_name"] == "Alice fine"


async def signup_with_name(http: httpx.AsyncClient, display_name: str) -> dict[str, str]:
    response = await http.post(
        "/v1/users",
        json={"username": unique_name("plain"), "password": PASSWORD, "display_name": display_name},
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "ab", "password": PASSWORD},  # too short
        {"username": "x" * 33, "password": PASSWORD},  # too long
        {"username": "Has-Caps", "password": PASSWORD},  # outside a-z0-9_.
        {"username": "with space", "password": PASSWORD},
        {"username": "fine_name", "password": "short"},  # password under 8
        {"username": "fine_name", "password": "p" * 257},  # password over 256
        {"password": PASSWORD},  # no username
        {"username": "fine_name"},  # no password
    ],
    ids=[
        "short-name",
        "long-name",
        "caps",
        "space",
        "short-password",
        "long-password",
        "no-name",
        "no-password",
    ],
)
async def test_invalid_signup_is_422(http: httpx.AsyncClient, payload: dict[str, str]) -> None:
    response = await http.post("/v1/users", json=payload)
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"


async def test_signup_body_that_is_not_json_is_422(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/users", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"


async def test_me_is_the_caller(http: httpx.AsyncClient) -> None:
    account = await new_account(http, "me")
    response = await http.get("/v1/me", headers=account.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == account.user_id
    assert body["username"] == account.username
    assert "display_name" in body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["none", "empty", "garbage", "basic"],
)
async def test_missing_or_bad_token_is_401(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for path in ("/v1/me", "/v1/channels", "/v1/friends", "/v1/discover"):
        response = await http.get(path, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert error_code(response) == "unauthorized"


def _tokens(account: Account) -> dict[str, str]:
    now = int(time.time())
    mine = {"sub": account.user_id, "did": account.device_id, "iat": now, "exp": now + 600}
    header, _payload, signature = account.token.split(".")
    claims = dict(mine, sub="1")
    other_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return {
        # The caller's real token with the payload swapped to claim another user.
        "tampered": f"{header}.{other_payload}.{signature}",
        "other-secret": make_token(mine, secret="another-secret-" * 4),
        "alg-none": make_token(mine, alg="none"),
        "expired": make_token(dict(mine, iat=now - 7200, exp=now - 3600)),
        # Correctly signed, but the user does not exist.
        "unknown-user": make_token(dict(mine, sub="1", did="2")),
    }


@pytest.mark.parametrize(
    "kind", ["tampered", "other-secret", "alg-none", "expired", "unknown-user"]
)
async def test_forged_or_stale_token_is_401(http: httpx.AsyncClient, kind: str) -> None:
    account = await new_account(http, "forge")
    token = _tokens(account)[kind]
    response = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert error_code(response) == "unauthorized"


async def test_well_formed_token_is_accepted(http: httpx.AsyncClient) -> None:
    """Control for the forged-token cases: the same recipe with the right claims works."""
    account = await new_account(http, "control")
    now = int(time.time())
    claims = {"sub": account.user_id, "did": account.device_id, "iat": now, "exp": now + 600}
    response = await http.get("/v1/me", headers={"Authorization": f"Bearer {make_token(claims)}"})
    assert response.status_code == 200, response.text


async def test_login_with_own_device_id_reuses_the_device(http: httpx.AsyncClient) -> None:
    first = await new_account(http, "reuse")
    again = await login(http, first.username, device_id=first.device_id)
    assert again.device_id == first.device_id
    assert again.user_id == first.user_id
    me = (await http.get("/v1/me", headers=again.auth)).json()
    assert me["user_id"] == first.user_id
    if "devices" in me:  # an addition of this server: the caller's devices
        assert [d["device_id"] for d in me["devices"]] == [first.device_id]


async def test_login_without_device_id_adds_a_device(http: httpx.AsyncClient) -> None:
    first = await new_account(http, "twodev")
    second = await login(http, first.username)
    assert second.device_id != first.device_id
    assert second.user_id == first.user_id


async def test_login_with_someone_elses_device_id_is_403(http: httpx.AsyncClient) -> None:
    mine = await new_account(http, "mine")
    theirs = await new_account(http, "theirs")
    response = await http.post(
        "/v1/sessions",
        json={"username": mine.username, "password": PASSWORD, "device_id": theirs.device_id},
    )
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


async def test_login_with_unknown_device_id_is_403(http: httpx.AsyncClient) -> None:
    mine = await new_account(http, "nodev")
    response = await http.post(
        "/v1/sessions",
        json={"username": mine.username, "password": PASSWORD, "device_id": "12345"},
    )
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


async def test_discover_points_at_the_chat_url(http: httpx.AsyncClient) -> None:
    account = await new_account(http, "disc")
    response = await http.get("/v1/discover", headers=account.auth)
    assert response.status_code == 200
    assert response.json()["chat_url"] == account.chat_url


async def test_get_user_shows_profile_and_presence(http: httpx.AsyncClient) -> None:
    viewer = await new_account(http, "viewer")
    target = await new_account(http, "target")
    await befriend(http, viewer, target)
    response = await http.get(f"/v1/users/{target.user_id}", headers=viewer.auth)
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == target.user_id
    assert body["username"] == target.username
    assert body["presence"]["status"] == "offline"
    assert "last_seen" in body["presence"]


@pytest.mark.parametrize("user_id", ["1", "999999999999999999", "abc"])
async def test_get_unknown_user_is_404(http: httpx.AsyncClient, user_id: str) -> None:
    viewer = await new_account(http, "viewer")
    response = await http.get(f"/v1/users/{user_id}", headers=viewer.auth)
    assert response.status_code == 404
    assert error_code(response) == "unknown_user"


async def test_push_token_only_for_own_device(http: httpx.AsyncClient) -> None:
    mine = await new_account(http, "push")
    theirs = await new_account(http, "pushother")
    body = {"provider": "fcm", "token": "tok-123"}
    ok = await http.put(f"/v1/devices/{mine.device_id}/push", json=body, headers=mine.auth)
    assert ok.status_code == 204, ok.text
    other = await http.put(f"/v1/devices/{theirs.device_id}/push", json=body, headers=mine.auth)
    assert other.status_code == 403
    assert error_code(other) == "forbidden"
    bad = await http.put(
        f"/v1/devices/{mine.device_id}/push",
        json={"provider": "carrier-pigeon", "token": "x"},
        headers=mine.auth,
    )
    assert bad.status_code == 422
    assert error_code(bad) == "invalid_request"


async def test_friends_are_listed_and_removed(http: httpx.AsyncClient) -> None:
    me = await new_account(http, "fr")
    friend = await new_account(http, "frnd")
    for _ in range(2):  # idempotent: one request
        put = await http.put(f"/v1/friends/{friend.user_id}", headers=me.auth)
        assert put.status_code == 204, put.text
    assert (await http.get("/v1/friends", headers=me.auth)).json()["friends"] == []
    accepted = await http.put(f"/v1/friends/{me.user_id}", headers=friend.auth)
    assert accepted.status_code == 204, accepted.text
    for who, whom in ((me, friend), (friend, me)):
        listed = (await http.get("/v1/friends", headers=who.auth)).json()["friends"]
        assert [f["user_id"] for f in listed] == [whom.user_id]
        assert listed[0]["username"] == whom.username
    gone = await http.delete(f"/v1/friends/{friend.user_id}", headers=me.auth)
    assert gone.status_code == 204
    assert (await http.get("/v1/friends", headers=me.auth)).json()["friends"] == []
    unknown = await http.put("/v1/friends/1", headers=me.auth)
    assert unknown.status_code == 404
    assert error_code(unknown) == "unknown_user"
