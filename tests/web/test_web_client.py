"""The web client in a real browser against a real `tidings up`.

Each test signs people up in browser contexts of their own (separate storage, as separate
browsers would be) and uses the page only through what a person sees: labels, buttons,
keys, ticks, banners. Screenshots land in test-artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import expect
from websockets.sync.client import connect

from ._pages import PASSWORD, ChatPage, begin_chat, send_many, unique
from ._server import WebServer

People = Callable[[str], ChatPage]
Shots = Callable[[ChatPage, str], Path]


def test_page_is_served_at_root_without_shadowing_the_api(server: WebServer) -> None:
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert '<script type="module" src="/web/js/app.js">' in page.text
        script = http.get("/web/js/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        # The contract's paths answer as before.
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/v1/me").json()["error"]["code"] == "unauthorized"
        assert http.get("/v1/nothing-here").json()["error"]["code"] == "not_found"
        assert http.get("/web/nothing-here").status_code == 404


def test_one_to_one_chat_ticks_typing_and_presence(people: People, shots: Shots) -> None:
    alice, bob = people("alice"), people("bob")
    alice.page.goto(alice.base_url + "/")
    expect(alice.page.get_by_role("heading", name="Log in")).to_be_visible()
    shots(alice, "log-in")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")
    alice.befriend(bob, "Bob", "Alice")  # presence is for friends

    alice.start_chat(bob.username, before_submit=lambda: shots(alice, "new-chat"))
    expect(alice.page.locator("#conversation-title")).to_have_text("Bob")
    expect(alice.composer).to_be_focused()
    expect(alice.status).to_have_text("online")
    alice.send("Hello Bob!")
    # Bob's page is open, so the message is delivered at once: two grey ticks.
    expect(alice.tick("Hello Bob!")).to_have_attribute("data-state", "delivered")
    expect(bob.channel("Alice")).to_have_attribute("data-unread", "1")
    expect(bob.channel("Alice").locator(".badge")).to_have_text("1")
    expect(bob.channel("Alice")).to_have_attribute("aria-label", "Alice, online, 1 unread message")
    shots(alice, "sent-delivered")
    shots(bob, "unread-badge")

    bob.open("Alice")
    bob.expect_message("Hello Bob!")
    expect(bob.channel("Alice")).to_have_attribute("data-unread", "0")
    expect(alice.tick("Hello Bob!")).to_have_attribute("data-state", "read")
    expect(alice.tick("Hello Bob!")).to_have_attribute("aria-label", "Read")

    # Bob types: Alice sees it; then he sends, and she (reading) turns his tick blue.
    bob.composer.press_sequentially("Hi Al", delay=30)
    expect(alice.page.locator(".typing")).to_have_text("Bob is typing…")
    shots(alice, "typing")
    bob.composer.press_sequentially("ice", delay=30)
    bob.composer.press("Enter")
    alice.expect_message("Hi Alice")
    expect(bob.tick("Hi Alice")).to_have_attribute("data-state", "read")
    expect(alice.page.locator(".typing")).to_have_text("")
    shots(alice, "conversation")
    shots(bob, "conversation")

    # Enter sends, Shift+Enter is a new line.
    alice.composer.fill("line one")
    alice.composer.press("Shift+Enter")
    alice.composer.press_sequentially("line two")
    alice.composer.press("Enter")
    bob.expect_message("line one\nline two")

    # A phone-sized window: one column, the conversation or the list, and a way back.
    alice.page.set_viewport_size({"width": 390, "height": 760})
    expect(alice.page.get_by_role("navigation", name="Conversations")).to_be_hidden()
    shots(alice, "phone-conversation")
    alice.page.get_by_role("button", name="Back to chats").click()
    expect(alice.channel("Bob")).to_be_visible()
    shots(alice, "phone-list")
    alice.open("Bob")
    alice.page.set_viewport_size({"width": 1100, "height": 720})

    # Bob closes his browser: his dot goes grey and Alice sees when he was last seen.
    bob.page.context.close()
    expect(alice.status).to_contain_text("last seen today at", timeout=20_000)
    expect(alice.channel("Bob").locator(".dot")).to_have_attribute("data-presence", "offline")
    expect(alice.channel("Bob")).to_have_attribute("aria-label", "Bob, offline")
    shots(alice, "bob-offline")
    assert alice.errors == []


def test_log_out_ends_the_session_and_a_new_login_is_a_new_device(
    people: People, shots: Shots, server: WebServer
) -> None:
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "see you later")
    before = alice.stored_session()

    alice.log_out()
    expect(alice.auth_message).to_have_text("You are logged out.")
    shots(alice, "logged-out")
    assert alice.page.evaluate("() => localStorage.getItem('tidings.session')") is None
    # Logging out unlinked the device on the server: its token is refused now.
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        me = http.get("/v1/me", headers={"Authorization": f"Bearer {before['access_token']}"})
    assert me.status_code == 401, me.text
    bob.send("while you were away")
    # Stored (acked) but no device of Alice's has it yet: one tick.
    expect(bob.tick("while you were away")).to_have_attribute("data-state", "sent")
    shots(bob, "sent-not-delivered")

    alice.log_in(password="not the password")
    expect(alice.page.get_by_role("alert")).to_have_text("Wrong username or password.")
    shots(alice, "wrong-password")
    alice.log_in()
    # A new device, which starts from what the old one held in this browser: the
    # message that came meanwhile is unread.
    expect(alice.channel("Bob").locator(".badge")).to_have_text("1")
    assert alice.stored_session()["device_id"] != before["device_id"]
    alice.open("Bob")
    alice.expect_message("see you later")
    alice.expect_message("while you were away")
    expect(bob.tick("while you were away")).to_have_attribute("data-state", "read")
    assert alice.errors == bob.errors == []


def test_group_search_history_paging_and_reload(
    people: People, shots: Shots, server: WebServer
) -> None:
    alice, bob, carol = people("alice"), people("bob"), people("carol")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")
    carol.sign_up(unique("carol"), "Carol")
    alice.befriend(bob, "Bob", "Alice")

    # A group made in the page with Bob, a friend (added at once); Carol is invited
    # later through "Members" and joins.
    alice.create_group("Weekend plans", friends=["Bob"])
    expect(alice.status).to_have_text("2 members")
    alice.send("Who is in for a hike on Saturday?")
    expect(bob.channel("Weekend plans").locator(".badge")).to_have_text("1")
    bob.open("Weekend plans")
    bob.expect_message("Who is in for a hike on Saturday?")
    expect(bob.page.locator("li.msg .sender").first).to_have_text("Alice")
    bob.send("Count me in")
    alice.expect_message("Count me in")

    alice.add_member(carol.username, "Carol was invited: they join once they accept.")
    shots(alice, "members")
    alice.close_dialog()
    expect(alice.status).to_have_text("2 members")
    carol.refresh_lists()
    expect(carol.requests).to_contain_text("Alice invited you to “Weekend plans”")
    carol.requests.get_by_role("button", name="Join Weekend plans").click()
    expect(carol.channel("Weekend plans")).to_be_visible()
    alice.open("Weekend plans")  # Carol's joining came as a membership event
    expect(alice.status).to_have_text("3 members")
    alice.send("Welcome Carol")
    expect(carol.channel("Weekend plans").locator(".badge")).to_have_text("1")
    carol.open("Weekend plans")
    carol.expect_message("Welcome Carol")
    carol.expect_message("Count me in")  # history from before she joined
    # Read by Bob (who has the group open) and Carol: blue ticks.
    expect(alice.tick("Welcome Carol")).to_have_attribute("data-state", "read")
    shots(carol, "group")
    shots(alice, "group-read")

    # Search finds a message in the caller's channels and opens it.
    results = alice.search("hike")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Weekend plans")
    shots(alice, "search")
    bob.open("Weekend plans")
    results.first.click()
    alice.expect_message("Who is in for a hike on Saturday?")

    # History paging: 45 messages from another of Bob's devices, then Alice reloads (her
    # cursor resumes from storage) and pages back through the conversation.
    alice.start_chat(bob.username)
    alice.send("ready for a long story")
    bob.open("Alice")
    bob.expect_message("ready for a long story")
    bodies = [f"story part {i:02d}" for i in range(1, 46)]
    send_many(server.url, bob.username, dm_id(alice.user_id, bob.user_id), bodies)
    alice.expect_message("story part 45")
    # Alice's inbox: the group's 3 membership events (created, Bob added, Carol joined),
    # 3 group messages, her 1:1 opener and the 45 parts (seq 52).
    cursor = alice.wait_stored_cursor(at_least=52)
    assert cursor == 52
    alice.page.reload()
    expect(alice.page.locator("#conversation-title")).to_have_text("Bob")
    alice.expect_message("story part 45")
    expect(alice.message("story part 01")).to_have_count(0)  # older than the first page
    assert int(alice.stored_state()["cursor"]) == cursor  # resumed, nothing replayed
    older = alice.page.get_by_role("button", name="Load older messages")
    while older.is_visible():
        older.click()
        alice.page.wait_for_timeout(200)
    expect(alice.page.get_by_text("This is the start of the conversation.")).to_be_visible()
    for body in [*bodies, "ready for a long story"]:
        alice.expect_message(body)
    expect(alice.page.locator("ol.messages li.msg")).to_have_count(46)
    shots(alice, "history-paged")
    assert alice.errors == bob.errors == carol.errors == []


def dm_id(a: str, b: str) -> str:
    low, high = sorted((int(a), int(b)))
    return f"dm:{low}:{high}"


def test_conversation_resumes_after_a_server_restart(
    people: People, shots: Shots, server: WebServer
) -> None:
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "before the crash")
    bob.send("me too")
    alice.expect_message("me too")

    server.kill()  # SIGKILL: no drain, the sockets just drop
    for person in (alice, bob):
        expect(person.banner).to_be_visible()
        expect(person.banner).to_contain_text("Reconnecting")
    # Sent while the server is down: it waits in the outbox (stored in the browser).
    alice.send("written while offline")
    expect(alice.tick("written while offline")).to_have_attribute("data-state", "pending")
    shots(alice, "server-down")

    server.start()  # same port, same data directory
    for person in (alice, bob):
        expect(person.banner).to_be_hidden(timeout=30_000)
    bob.expect_message("written while offline")
    expect(alice.tick("written while offline")).to_have_attribute("data-state", "read")
    bob.send("back again")
    alice.expect_message("back again")
    shots(alice, "after-restart")

    # A reload resumes from the stored cursor: everything once, nothing lost or doubled.
    for person in (alice, bob):
        person.page.reload()
        expect(person.page.locator("#conversation-title")).to_be_visible()
        for body in ("before the crash", "me too", "written while offline", "back again"):
            person.expect_message(body)
        expect(person.page.locator("ol.messages li.msg")).to_have_count(4)
    shots(bob, "after-reload")
    assert alice.errors == bob.errors == []


def test_a_restart_in_place_brings_the_page_back_to_the_same_url(
    people: People, server: WebServer
) -> None:
    """A SIGTERM of `tidings up` says reconnect{same_url}: the page comes back to the
    server it was on without asking /v1/discover, and the conversation goes on."""
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "before the restart")

    discovers: list[str] = []
    for person in (alice, bob):
        person.page.on(
            "request",
            lambda request: (
                discovers.append(request.url) if "/v1/discover" in request.url else None
            ),
        )
    server.stop()  # SIGTERM: the restart in place tells every page to come back
    for person in (alice, bob):
        expect(person.banner).to_be_visible()
    server.start()
    for person in (alice, bob):
        expect(person.banner).to_be_hidden(timeout=30_000)
    alice.send("after the restart")
    bob.expect_message("after the restart")
    assert discovers == []
    assert alice.errors == bob.errors == []


def test_an_end_to_end_chat_is_shown_read_only_with_a_notice(
    people: People, shots: Shots, server: WebServer, tmp_path: Path
) -> None:
    """The web client holds no keys (docs/e2ee.md): an end-to-end message shows as
    encrypted, never as a body, and the composer of that chat is off with a notice. Bob
    and Alice's second device are Python clients with keys (tidings.client._e2ee)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from tidings.client._e2ee import DeviceCrypto

    alice = people("alice")
    alice.sign_up(unique("alice"), "Alice")
    secret = f"secret-{uuid.uuid4().hex[:8]}"

    bob_name = unique("bob")

    async def bob_writes_end_to_end(tmp: Path) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=20, trust_env=False) as http:
            await http.post("/v1/users", json={"username": bob_name, "password": PASSWORD})
            bob = (
                await http.post("/v1/sessions", json={"username": bob_name, "password": PASSWORD})
            ).json()
            phone = (
                await http.post(
                    "/v1/sessions", json={"username": alice.username, "password": PASSWORD}
                )
            ).json()
            auth = {"Authorization": f"Bearer {phone['access_token']}"}
            bob_auth = {"Authorization": f"Bearer {bob['access_token']}"}
            for who, whom in ((auth, bob["user_id"]), (bob_auth, alice.user_id)):
                await http.put(f"/v1/friends/{whom}", headers=who)
            keys = {}
            for session, headers in ((phone, auth), (bob, bob_auth)):
                crypto = DeviceCrypto(tmp / f"{session['device_id']}.json", session["device_id"])
                await http.put("/v1/keys", json=crypto.keys_body(3), headers=headers)
                keys[session["device_id"]] = crypto
            sender = keys[bob["device_id"]]
            (bundle,) = (
                await http.get(f"/v1/users/{alice.user_id}/keys", headers=bob_auth)
            ).json()["devices"]
            sender.start_session(bundle)
            envelope = sender.envelope(bundle["device_id"], bundle["identity_key"], secret.encode())
            with connect(bob["chat_url"], open_timeout=5, proxy=None) as ws:
                ws.send(json.dumps({"type": "hello", "token": bob["access_token"], "cursor": "0"}))
                frame = {
                    "type": "send",
                    "client_msg_id": "e2e-1",
                    "to": alice.user_id,
                    "body": "",
                    "envelopes": [envelope],
                }
                ws.send(json.dumps(frame))
                while (answer := json.loads(ws.recv(timeout=10)))["type"] not in ("ack", "error"):
                    pass
                assert answer["type"] == "ack", answer

    # Playwright's sync API runs a loop in this thread: Bob's clients run in another.
    with ThreadPoolExecutor(1) as other_thread:
        other_thread.submit(asyncio.run, bob_writes_end_to_end(tmp_path)).result()
    alice.refresh_lists()
    alice.open(bob_name)  # his username: he gave no display name
    alice.expect_message("🔒 Encrypted message: read it in the Tidings app")
    expect(alice.page.locator("ol.messages")).not_to_contain_text(secret)
    expect(alice.composer).to_be_disabled()
    expect(alice.composer).to_have_attribute(
        "placeholder", "End-to-end encrypted: send and read in the Tidings app"
    )
    shots(alice, "end-to-end-read-only")
    assert alice.errors == []
