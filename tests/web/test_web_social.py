"""The issue #15 flows in the page: a new chat by username, friend requests between two
browsers, blocking from a 1:1 chat, group invites, logging out and unlinking a device, and
a newer tab of the same device taking over (close 4011)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ._pages import ChatPage, begin_chat, unique
from ._server import WebServer

People = Callable[[str], ChatPage]
Shots = Callable[[ChatPage, str], Path]


def test_new_chat_by_username(people: People, shots: Shots) -> None:
    alice, bob = people("alice"), people("bob")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")

    alice.page.get_by_role("button", name="New chat").click()
    dialog = alice.page.get_by_role("dialog")
    username = dialog.get_by_label("Username")
    username.fill(unique("nobody"))
    dialog.get_by_role("button", name="Start chat").click()
    expect(dialog.get_by_role("alert")).to_have_text("There is no user with that username.")
    shots(alice, "unknown-username")
    username.fill(alice.username)
    dialog.get_by_role("button", name="Start chat").click()
    expect(dialog.get_by_role("alert")).to_have_text("That is your own username.")
    username.fill(f"@{bob.username.upper()}")  # as people type it: an @, capitals
    dialog.get_by_role("button", name="Start chat").click()
    expect(dialog).to_have_count(0)
    expect(alice.page.locator("#conversation-title")).to_have_text("Bob")
    alice.send("found you by your username")
    bob.open("Alice")
    bob.expect_message("found you by your username")
    bob.send("so you did")
    alice.expect_message("so you did")
    shots(alice, "chat")
    assert alice.errors == bob.errors == []


@pytest.mark.parametrize("server_env", [{"TIDINGS_USER_LOOKUPS_PER_HOUR": "3"}])
def test_too_many_username_look_ups_are_refused_clearly(people: People) -> None:
    alice = people("alice")
    alice.sign_up(unique("alice"), "Alice")
    alice.page.get_by_role("button", name="New chat").click()
    dialog = alice.page.get_by_role("dialog")
    error = dialog.get_by_role("alert")
    for _ in range(10):
        dialog.get_by_label("Username").fill(unique("nobody"))
        dialog.get_by_role("button", name="Start chat").click()
        expect(error).not_to_have_text("")
        if error.inner_text().startswith("Too many attempts"):
            break
        expect(error).to_have_text("There is no user with that username.")
    expect(error).to_have_text(re.compile(r"^Too many attempts\. Try again in [0-9]+ minutes?\.$"))
    assert alice.errors == []


def test_friend_request_sent_and_accepted_in_two_browsers(people: People, shots: Shots) -> None:
    alice, bob, carol = people("alice"), people("bob"), people("carol")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")
    carol.sign_up(unique("carol"), "Carol")

    alice.send_friend_request(bob.username)
    carol.send_friend_request(bob.username)
    # Alice sees her request waiting.
    alice.page.get_by_role("button", name="Friends").click()
    dialog = alice.page.get_by_role("dialog")
    expect(dialog.get_by_role("list", name="Your friend requests")).to_contain_text("Bob")
    shots(alice, "request-waiting")
    alice.close_dialog()

    # Bob's page finds both requests (on focus here; every 30 s anyway).
    bob.refresh_lists()
    expect(bob.requests).to_contain_text("Alice wants to be friends")
    expect(bob.requests).to_contain_text("Carol wants to be friends")
    expect(bob.page.locator("#friends .badge")).to_have_text("2")
    shots(bob, "requests")
    bob.requests.get_by_role("button", name="Accept Alice").click()
    bob.requests.get_by_role("button", name="Decline Carol").click()
    expect(bob.requests).to_be_hidden()
    expect(bob.page.locator("#friends .badge")).to_be_hidden()

    # Both are friends now: a chat between them shows presence, and the button says so.
    alice.refresh_lists()
    alice.page.get_by_role("button", name="Friends").click()
    dialog = alice.page.get_by_role("dialog")
    expect(dialog.get_by_role("list", name="Friends", exact=True)).to_contain_text("Bob")
    expect(dialog.get_by_text("None waiting.")).to_be_visible()
    shots(alice, "friends")
    dialog.get_by_role("button", name="Chat with Bob").click()
    expect(alice.page.locator("#conversation-title")).to_have_text("Bob")
    expect(alice.status).to_have_text("online")
    expect(alice.page.locator("#friend-button")).to_have_text("Friends ✓")
    alice.send("friends at last")
    bob.open("Alice")
    bob.expect_message("friends at last")
    expect(bob.status).to_have_text("online")

    # Carol's request was declined: she is no friend of Bob's.
    carol.refresh_lists()
    carol.page.get_by_role("button", name="Friends").click()
    dialog = carol.page.get_by_role("dialog")
    expect(dialog.get_by_text("None waiting.")).to_be_visible()
    expect(dialog.get_by_text("No friends yet.")).to_be_visible()
    carol.close_dialog()
    assert alice.errors == bob.errors == carol.errors == []


def test_block_from_a_one_to_one_chat(people: People, shots: Shots) -> None:
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "hello there")

    bob.page.get_by_role("button", name="Block Alice").click()
    expect(bob.page.locator(".blocked-note")).to_contain_text("You blocked Alice")
    expect(bob.page.get_by_role("button", name="Unblock Alice")).to_be_visible()
    shots(bob, "blocked")

    alice.send("are you there?")
    expect(alice.tick("are you there?")).to_have_attribute("data-state", "failed")
    failed = alice.message("are you there?").locator(".retry")
    expect(failed).to_contain_text("Not delivered: this person has blocked you.")
    expect(failed.get_by_role("button", name="Retry")).to_have_count(0)  # it cannot work
    shots(alice, "not-delivered")
    bob.page.wait_for_timeout(500)
    expect(bob.message("are you there?")).to_have_count(0)

    bob.page.get_by_role("button", name="Unblock Alice").click()
    expect(bob.page.get_by_role("button", name="Block Alice")).to_be_visible()
    alice.send("and now?")
    # Stored (sent, delivered or read) — not refused as blocked, not waiting to go out.
    expect(alice.tick("and now?")).to_have_attribute(
        "data-state", re.compile("sent|delivered|read")
    )
    bob.expect_message("and now?")
    expect(alice.tick("and now?")).to_have_attribute("data-state", "read")
    expect(bob.message("are you there?")).to_have_count(0)  # the refused one stays refused
    assert alice.errors == bob.errors == []


def test_a_group_invite_accepted_and_one_declined(people: People, shots: Shots) -> None:
    alice, bob = people("alice"), people("bob")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")

    # Bob is no friend of Alice's: naming him invites him.
    alice.create_group("Book club", invite=[bob.username])
    expect(alice.page.locator("#notice")).to_have_text("Invited Bob: they join once they accept.")
    expect(alice.status).to_have_text("1 member")
    alice.send("first book: Middlemarch")
    alice.create_group("Chess", invite=[bob.username])

    bob.refresh_lists()
    expect(bob.requests).to_contain_text("Alice invited you to “Book club”")
    expect(bob.requests).to_contain_text("Alice invited you to “Chess”")
    expect(bob.channel("Book club")).to_have_count(0)  # not a member before accepting
    shots(bob, "invites")
    bob.requests.get_by_role("button", name="Decline the invite to Chess").click()
    expect(bob.requests).not_to_contain_text("Chess")
    bob.requests.get_by_role("button", name="Join Book club").click()
    expect(bob.channel("Book club")).to_be_visible()
    expect(bob.requests).to_be_hidden()
    bob.open("Book club")
    bob.expect_message("first book: Middlemarch")
    expect(bob.status).to_have_text("2 members")
    bob.send("count me in")
    alice.open("Book club")  # she made "Chess" last
    alice.expect_message("count me in")
    expect(bob.channel("Chess")).to_have_count(0)
    shots(bob, "joined")
    assert alice.errors == bob.errors == []


def test_unlinking_another_device_ends_its_session(
    people: People, shots: Shots, server: WebServer
) -> None:
    laptop = people("laptop")
    laptop.sign_up(unique("alice"), "Alice")
    phone = people("phone")
    phone.username = laptop.username
    phone.page.goto(phone.base_url + "/")
    phone.log_in()
    expect(phone.page.locator("#my-user-id")).to_have_text(laptop.user_id)
    phone_device = phone.stored_session()["device_id"]

    settings = laptop.open_settings()
    devices = settings.get_by_role("list", name="Devices")
    expect(devices.locator("li")).to_have_count(2)
    expect(devices.locator("li").filter(has_text="This device")).to_have_count(1)
    shots(laptop, "devices")
    other = devices.locator(f'li[data-device-id="{phone_device}"]')
    other.get_by_role("button", name="Unlink").click()
    expect(devices.locator("li")).to_have_count(1)

    # The phone's socket is closed with 4001: its page goes back to the login screen.
    expect(phone.page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(phone.auth_message).to_contain_text("Your session has ended")
    assert phone.page.evaluate("() => localStorage.getItem('tidings.session')") is None
    shots(phone, "session-ended")
    # The laptop goes on.
    laptop.close_dialog()
    expect(laptop.page.locator("#my-user-id")).to_be_visible()
    assert laptop.errors == phone.errors == []


def test_a_newer_tab_of_the_same_device_takes_over(people: People, shots: Shots) -> None:
    """A device has at most 2 sockets: a third tab closes the oldest with 4011, which
    does not reconnect by itself, and "Use here" makes it the live one again."""
    first = people("first")
    first.sign_up(unique("alice"), "Alice")
    context = first.page.context
    tabs = [ChatPage(f"tab{i}", context.new_page(), first.base_url) for i in (2, 3)]
    for tab in tabs:
        tab.page.goto(tab.base_url + "/")
        expect(tab.page.locator("#my-user-id")).to_have_text(first.user_id)
    expect(first.banner).to_contain_text("Tidings is open in another tab or window.")
    first.page.wait_for_timeout(1500)  # it stays so: no reconnect loop between tabs
    expect(first.banner).to_contain_text("Tidings is open in another tab or window.")
    shots(first, "superseded")
    first.page.get_by_role("button", name="Use here").click()
    expect(first.banner).to_be_hidden()
    expect(tabs[0].banner).to_contain_text("Tidings is open in another tab or window.")
    assert first.errors == []
