"""Everyday use of the web client (issue #20, items 3, 7, 8, 9, 10) in a real browser
against a real `tidings up`: the browser's Back on a phone, days and the unread line,
"Jump to latest" and the search hit, right-to-left text, links, trimming and long pastes,
"connecting…" while the socket is down, one's username and display name, desktop
notifications and a muted chat. Screenshots land in test-artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import ViewportSize, expect

from ._pages import ChatPage, begin_chat, send_many, unique
from ._server import WebServer

People = Callable[[str], ChatPage]
Shots = Callable[[ChatPage, str], Path]
PHONE: ViewportSize = {"width": 390, "height": 700}

# Records every desktop notification the page makes (and still makes the real one).
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  function Recorded(title, options) {
    const entry = { title, body: options?.body, tag: options?.tag, note: null };
    window.__notifications.push(entry);
    entry.note = new Real(title, options);
    return entry.note;
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  Recorded.prototype = Real.prototype;
  window.Notification = Recorded;
})();
"""


def dm_channel(a: ChatPage, b: ChatPage) -> str:
    low, high = sorted((int(a.user_id), int(b.user_id)))
    return f"dm:{low}:{high}"


def dialog_closed(person: ChatPage) -> None:
    """Escape closes the dialog, whose history entry then goes (a Back of the page's own:
    a reload started before it lands would be cut short)."""
    person.close_dialog()
    person.page.wait_for_function("() => !history.state?.dialog")


def expect_list(person: ChatPage) -> None:
    """The phone shows the channel list (and no conversation)."""
    expect(person.page.get_by_role("navigation", name="Conversations")).to_be_visible()
    expect(person.page.locator(".conversation-pane")).to_have_count(0)
    expect(person.page).to_have_url(person.base_url + "/")


def expect_conversation(person: ChatPage, title: str) -> None:
    expect(person.page.locator("#conversation-title")).to_have_text(title)
    expect(person.page.get_by_role("navigation", name="Conversations")).to_be_hidden()
    expect(person.page).to_have_url(re.compile(r"#/c/dm"))


def test_back_walks_the_list_conversations_and_dialogs_on_a_phone(
    people: People, shots: Shots
) -> None:
    alice, bob = people("alice"), people("bob")
    bob.sign_up(unique("bob"), "Bob")
    alice.sign_up(unique("alice"), "Alice")
    alice.page.set_viewport_size(PHONE)
    # Started from the "New chat" dialog: the chat takes the dialog's place in history.
    alice.start_chat(bob.username)
    expect_conversation(alice, "Bob")
    alice.send("hello from a phone")
    shots(alice, "conversation")

    alice.page.go_back()
    expect_list(alice)
    expect(alice.channel("Bob")).to_be_visible()
    shots(alice, "back-to-the-list")
    alice.page.go_forward()
    expect_conversation(alice, "Bob")
    alice.expect_message("hello from a phone")
    alice.page.go_back()
    expect_list(alice)

    # A dialog is a step of its own: Back closes it and the page stays.
    alice.page.get_by_role("button", name="Settings").click()
    expect(alice.page.get_by_role("dialog")).to_be_visible()
    alice.page.go_back()
    expect(alice.page.get_by_role("dialog")).to_have_count(0)
    expect_list(alice)
    # Closed with Escape, it leaves no step behind: Back from a chat is the list again.
    alice.page.get_by_role("button", name="Settings").click()
    alice.close_dialog()
    alice.open("Bob")
    expect_conversation(alice, "Bob")
    alice.page.go_back()
    expect_list(alice)
    # The page's own back button is the same step back.
    alice.open("Bob")
    alice.page.get_by_role("button", name="Back to chats").click()
    expect_list(alice)
    alice.page.go_forward()
    expect_conversation(alice, "Bob")

    # A page opened (or reloaded) at a chat's address has the list under it, not the
    # page before (here about:blank): Back stays in Tidings.
    chat_url = alice.page.url
    tab = alice.page.context.new_page()
    tab.set_viewport_size(PHONE)
    tab.goto(chat_url)
    expect(tab.locator("#conversation-title")).to_have_text("Bob")
    tab.go_back()
    expect(tab.get_by_role("navigation", name="Conversations")).to_be_visible()
    expect(tab).to_have_url(alice.base_url + "/")
    tab.close()
    assert alice.errors == []


def test_days_unread_line_jump_to_latest_and_the_search_hit(
    people: People, shots: Shots, server: WebServer
) -> None:
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "before the news")
    expect(alice.tick("before the news")).to_have_attribute("data-state", "read")
    bob.page.keyboard.press("Escape")  # he is in the list now

    # Alice's other device sends a long stretch while Bob is not in the chat.
    many = [f"pineapple number {i}\nsecond line\nthird line" for i in range(14)]
    send_many(server.url, alice.username, dm_channel(alice, bob), many)
    expect(bob.channel("Alice").locator(".badge")).to_have_text("14")
    bob.page.set_viewport_size(PHONE)
    bob.open("Alice")
    line = bob.page.locator(".unread-separator")
    expect(line).to_have_text("14 unread messages")
    # It sits right before the first of the fourteen, below what he had read.
    first_new = bob.message(many[0])
    assert line.evaluate("(el) => el.nextElementSibling.dataset.messageId") == (
        first_new.get_attribute("data-message-id")
    )
    expect(line).to_be_in_viewport()  # opened at the unread line, not at the bottom
    expect(bob.message(many[-1])).not_to_be_in_viewport()
    expect(bob.page.locator(".day-separator")).to_have_text(["Today"])
    jump = bob.page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_visible()
    shots(bob, "unread-line")
    jump.click()
    expect(bob.message(many[-1])).to_be_in_viewport()
    expect(jump).to_be_hidden()
    # A message while he reads does not move the line.
    alice.send("one more")
    bob.expect_message("one more")
    expect(line).to_have_text("14 unread messages")
    assert line.evaluate("(el) => el.nextElementSibling.dataset.messageId") == (
        first_new.get_attribute("data-message-id")
    )

    # Scrolling up offers the way back down.
    bob.page.locator(".scroller").evaluate("(el) => { el.scrollTop = 0; }")
    expect(jump).to_be_visible()
    jump.click()
    expect(jump).to_be_hidden()

    # A search hit: the chat opens at the message, marked, its words highlighted, and
    # "Jump to latest" is there.
    bob.page.get_by_role("button", name="Back to chats").click()
    results = bob.search("PineApple number 3")
    results.filter(has_text="pineapple number 3").first.click()
    hit = bob.page.locator("li.msg.hit")
    expect(hit).to_have_count(1)
    expect(bob.message(many[3])).to_have_class(re.compile(r"\bhit\b"))
    expect(hit.locator("mark")).to_have_text(["pineapple", "number", "3"])
    expect(hit).to_be_in_viewport()
    expect(jump).to_be_visible()
    shots(bob, "search-hit")
    jump.click()
    expect(bob.message("one more")).to_be_in_viewport()

    assert alice.errors == bob.errors == []


def test_days_split_where_the_date_changes(people: People) -> None:
    """Messages across midnight, in the browser's own time zone (dates.js, no server)."""
    alice = people("alice")
    alice.sign_up(unique("alice"), "Alice")
    result: dict[str, Any] = alice.page.evaluate(
        """async () => {
          const { dayLabel, withSeparators } = await import("/web/js/views/dates.js");
          const at = (d, h) => new Date(2026, 11, d, h, 30).getTime();
          const msg = (id, d, h, sender = "2") => ({ message_id: String(id), ts: at(d, h),
            sender_id: sender });
          const list = [msg(1, 6, 23), msg(2, 7, 0, "1"), msg(3, 7, 9), msg(4, 8, 1),
            { ...msg(5, 8, 2), event: { type: "renamed" } }, msg(6, 8, 3)];
          const unread = { count: 3 };
          const keys = (items) => items.map((i) => i.key ?? i.message_id);
          const first = keys(withSeparators(list, "1", unread, true));
          const later = keys(withSeparators([...list, msg(7, 8, 4)], "1", unread, true));
          const labels = [dayLabel(at(8, 1), at(8, 23)), dayLabel(at(7, 23), at(8, 0)),
            dayLabel(at(1, 9), at(8, 1)), dayLabel(new Date(2025, 0, 5).getTime(), at(8, 1))];
          return { first, later, labels };
        }"""
    )
    days = ["day:2026-12-06", "day:2026-12-07", "day:2026-12-08"]
    # The unread line is before the third-newest message from others (events are skipped).
    assert result["first"] == [days[0], "1", days[1], "2", "unread", "3", days[2], "4", "5", "6"]
    # Once placed, it stays before that message when more come.
    assert result["later"] == [*result["first"], "7"]
    today, yesterday, last_week, last_year = result["labels"]
    assert (today, yesterday) == ("Today", "Yesterday")
    assert re.fullmatch(r"Tuesday, (December 1|1 December)", last_week), last_week
    assert re.fullmatch(r"Sunday, (January 5, 2025|5 January 2025)", last_year), last_year


def test_text_direction_links_trimming_and_long_pastes(people: People, shots: Shots) -> None:
    alice, bob = people("alice"), people("bob")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")
    alice.start_chat(bob.username)
    alice.send("   hello   \n")
    bob.open("Alice")
    bob.expect_message("hello")  # leading and trailing whitespace trimmed

    arabic = "مرحبا، كيف حالك؟ hello"
    alice.send(arabic)
    body = bob.expect_message(arabic)
    expect(body).to_have_attribute("dir", "auto")
    assert body.evaluate("(el) => el.matches(':dir(rtl)')")
    assert not bob.expect_message("hello").evaluate("(el) => el.matches(':dir(rtl)')")
    alice.composer.fill("שלום")
    assert alice.composer.evaluate("(el) => el.matches(':dir(rtl)')")
    alice.composer.fill("")

    text = (
        "see https://example.com/wiki/Tea_(drink), javascript:alert(1) and "
        "(http://tidings.test/a?b=1&c=2). also ftp://old.test/x"
    )
    alice.send(text)
    body = bob.expect_message(text)
    links = body.locator("a")
    expect(links).to_have_count(2)
    expect(links.nth(0)).to_have_attribute("href", "https://example.com/wiki/Tea_(drink)")
    expect(links.nth(0)).to_have_text("https://example.com/wiki/Tea_(drink)")
    expect(links.nth(1)).to_have_attribute("href", "http://tidings.test/a?b=1&c=2")
    for i in range(2):
        expect(links.nth(i)).to_have_attribute("rel", "noopener noreferrer")
        expect(links.nth(i)).to_have_attribute("target", "_blank")
    # Markup in a message stays text.
    alice.send('<a href="javascript:alert(2)">x</a> <b>bold</b>')
    expect(
        bob.message('<a href="javascript:alert(2)">x</a> <b>bold</b>').locator(".body a, .body b")
    ).to_have_count(0)
    shots(bob, "rtl-and-links")

    # A paste past the limit is refused whole with the reason; one at the limit is taken.
    context = alice.page.context
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=alice.base_url)

    def paste(n: int) -> None:
        alice.page.evaluate("(n) => navigator.clipboard.writeText('x'.repeat(n))", n)
        alice.composer.fill("")
        alice.composer.focus()
        alice.page.keyboard.press("Control+V")

    paste(100_001)
    expect(alice.page.locator("#notice")).to_have_text(
        "That is too long to send: a message can be at most 100,000 characters "
        "(this would be 100,001). Nothing was pasted."
    )
    expect(alice.composer).to_have_value("")
    shots(alice, "long-paste-refused")
    paste(100_000)
    assert alice.composer.evaluate("(el) => el.value.length") == 100_000
    alice.composer.press("Enter")
    expect(alice.composer).to_have_value("")
    expect(bob.page.locator("ol.messages li.msg .body").last).to_have_text("x" * 100_000)
    assert alice.errors == bob.errors == []


def test_connecting_while_down_own_username_and_display_name(
    people: People, shots: Shots, server: WebServer
) -> None:
    alice, bob = people("alice"), people("bob")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")
    alice.befriend(bob, "Bob", "Alice")  # presence is for friends
    alice.start_chat(bob.username)
    alice.send("hi Bob")
    expect(alice.status).to_have_text("online")
    expect(alice.channel("Bob").locator(".dot")).to_have_attribute("data-presence", "online")

    server.kill()
    expect(alice.status).to_have_text("connecting…")
    expect(alice.channel("Bob").locator(".dot")).not_to_have_attribute("data-presence", "online")
    shots(alice, "connecting")
    server.start()
    expect(alice.status).to_have_text("online", timeout=30_000)

    # The home screen (a phone's list) says who you are.
    alice.page.set_viewport_size(PHONE)
    alice.page.get_by_role("button", name="Back to chats").click()
    expect(alice.page.locator("#my-username")).to_have_text(f"@{alice.username}")
    expect(alice.page.locator("#my-username")).to_be_in_viewport()
    expect(alice.page.locator(".me-name")).to_have_text("Alice")

    settings = alice.open_settings()
    name = settings.get_by_label("Display name")
    expect(name).to_have_value("Alice")
    name.fill("bad\u0007name")
    settings.get_by_role("button", name="Save name").click()
    expect(settings.get_by_role("alert")).to_have_text(
        "A display name is 1-128 characters, without control characters."
    )
    name.fill("  Alice Liddell ")
    settings.get_by_role("button", name="Save name").click()
    expect(settings.locator(".form-result")).to_have_text(
        "Your display name is now “Alice Liddell”."
    )
    expect(settings.locator(".settings-name")).to_have_text("Alice Liddell")
    shots(alice, "display-name")
    dialog_closed(alice)
    expect(alice.page.locator(".me-name")).to_have_text("Alice Liddell")
    alice.page.reload()
    expect(alice.page.locator(".me-name")).to_have_text("Alice Liddell")
    # Others see it on their next look-up of her profile.
    bob.page.reload()
    expect(bob.channel("Alice Liddell")).to_be_visible()
    assert alice.errors == bob.errors == []


def notifications(person: ChatPage) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = person.page.evaluate(
        "() => window.__notifications.map(({ title, body, tag }) => ({ title, body, tag }))"
    )
    return made


def test_desktop_notifications_for_chats_not_in_view_and_mute(people: People, shots: Shots) -> None:
    alice, bob = people("alice"), people("bob")
    alice.page.context.grant_permissions(["notifications"], origin=alice.base_url)
    alice.page.context.add_init_script(RECORD_NOTIFICATIONS)
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")

    settings = alice.open_settings()
    expect(settings.locator("#notify-status")).to_have_text("Desktop notifications are off.")
    settings.get_by_role("button", name="Turn on notifications").click()
    expect(settings.locator("#notify-status")).to_contain_text("Desktop notifications are on")
    shots(alice, "notifications-on")
    alice.close_dialog()

    bob.start_chat(alice.username)
    bob.send("are you there?")
    expect(alice.channel("Bob").locator(".badge")).to_have_text("1")
    channel = dm_channel(alice, bob)
    alice.page.wait_for_function("() => window.__notifications.length === 1")
    assert notifications(alice) == [{"title": "Bob", "body": "are you there?", "tag": channel}]
    # A click on it opens the chat.
    alice.page.evaluate("() => window.__notifications[0].note.onclick()")
    expect(alice.page.locator("#conversation-title")).to_have_text("Bob")

    # In view: none.
    bob.send("good")
    alice.expect_message("good")
    expect(bob.tick("good")).to_have_attribute("data-state", "read")
    assert len(notifications(alice)) == 1
    # Muted: none, though the chat is not in view; the badge still counts.
    alice.page.get_by_role("button", name="Mute notifications from Bob").click()
    expect(alice.page.locator("#mute-button")).to_have_attribute("aria-pressed", "true")
    alice.page.keyboard.press("Escape")  # back to the list
    expect(alice.channel("Bob")).to_have_attribute("data-muted", "true")  # 🔕 in the list
    bob.send("muted one")
    expect(alice.channel("Bob").locator(".badge")).to_have_text("1")
    expect(alice.channel("Bob")).to_have_attribute("aria-label", re.compile(r", muted$"))
    assert len(notifications(alice)) == 1
    alice.open("Bob")
    alice.expect_message("muted one")
    expect(alice.page.locator("#mute-button")).to_have_text("Unmute")
    alice.page.reload()  # the mute is kept
    expect(alice.page.locator("#mute-button")).to_have_text("Unmute")
    alice.page.get_by_role("button", name="Unmute notifications from Bob").click()
    alice.page.keyboard.press("Escape")
    bob.send("back again")
    alice.page.wait_for_function("() => window.__notifications.length >= 1")
    assert notifications(alice) == [{"title": "Bob", "body": "back again", "tag": channel}]
    assert alice.errors == bob.errors == []
