"""Issue #20 in the web client, in a real browser against a real `tidings up`: ticks and
unread counts from the server's read marks, membership events as system lines, group
roles and management, a removed member's read-only chat, and replies, edits, deletes and
reactions. Screenshots land in test-artifacts/screenshots/<test>/."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, ViewportSize, expect

from ._pages import ChatPage, begin_chat, unique
from ._server import WebServer

People = Callable[[str], ChatPage]
Shots = Callable[[ChatPage, str], Path]
PHONE: ViewportSize = {"width": 390, "height": 760}


def reopen(person: ChatPage, server: WebServer) -> ChatPage:
    """The same browser (context: its storage, its device) in a new tab at the page."""
    page = ChatPage(person.who, person.page.context.new_page(), server.url)
    page.username, page.user_id = person.username, person.user_id
    page.page.goto(server.url + "/")
    expect(page.page.locator("#my-user-id")).to_have_text(person.user_id)
    return page


def system_line(person: ChatPage, text: str) -> Locator:
    return person.page.locator("ol.messages li.system-line").filter(has_text=text)


def message_menu(person: ChatPage, body: str) -> Locator:
    """Open the "⋯" menu of the message with exactly this body; the menu."""
    bubble = person.message(body)
    bubble.hover()
    bubble.get_by_role("button", name="Message actions").click()
    menu = bubble.get_by_role("menu")
    expect(menu).to_be_visible()
    return menu


def group_dialog(person: ChatPage) -> Locator:
    person.page.get_by_role("button", name="Members").click()
    dialog = person.page.get_by_role("dialog")
    expect(dialog.get_by_role("list", name="Members")).to_be_visible()
    return dialog


def test_ticks_and_unread_counts_come_from_the_server(
    people: People, shots: Shots, server: WebServer
) -> None:
    alice, bob = people("alice"), people("bob")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")

    # Item 2: Bob is brand new and his page is closed (his device's cursor is still "0").
    # Alice writes first; when he comes back, the chat he never opened is unread, in bold.
    bob.page.close()
    alice.start_chat(bob.username)
    for body in ("Hi Bob, welcome!", "Are you coming on Friday?"):
        alice.send(body)
        expect(alice.tick(body)).to_have_attribute("data-state", "sent")
    bob = reopen(bob, server)
    row = bob.channel("Alice")
    expect(row.locator(".badge")).to_have_text("2")
    expect(row).to_have_attribute("aria-label", re.compile(r", 2 unread messages$"))
    weight = row.locator(".channel-name").evaluate("el => getComputedStyle(el).fontWeight")
    assert int(weight) >= 700
    preview = row.locator(".channel-preview").evaluate("el => getComputedStyle(el).fontWeight")
    assert int(preview) >= 700
    shots(bob, "unread-new-user")
    # Another tab of Bob's (the same device, after a reload) says the same.
    bob.page.reload()
    expect(bob.channel("Alice").locator(".badge")).to_have_text("2")

    # Item 1: Alice's message is delivered to Bob's open page; she closes her tab; Bob
    # reads. When Alice comes back, the tick is blue: the channel list's receipts.
    alice.send("See you there")
    expect(alice.tick("See you there")).to_have_attribute("data-state", "delivered")
    alice.page.close()
    bob.open("Alice")
    bob.expect_message("See you there")
    expect(bob.channel("Alice")).to_have_attribute("data-unread", "0")
    weight = (
        bob.channel("Alice")
        .locator(".channel-name")
        .evaluate("el => getComputedStyle(el).fontWeight")
    )
    assert int(weight) < 700
    bob.page.wait_for_timeout(500)  # the read receipt goes out (150 ms after the render)
    alice = reopen(alice, server)
    expect(alice.channel("Bob").locator(".badge")).to_be_hidden()
    alice.open("Bob")
    for body in ("Hi Bob, welcome!", "Are you coming on Friday?", "See you there"):
        expect(alice.tick(body)).to_have_attribute("data-state", "read")
    expect(alice.tick("See you there")).to_have_attribute("aria-label", "Read")
    shots(alice, "ticks-read-after-reopening")

    # Bob answers while Alice's page is open but she is elsewhere: one unread, live.
    alice.page.keyboard.press("Escape")  # back to the list
    bob.send("Yes, I am coming")
    expect(alice.channel("Bob").locator(".badge")).to_have_text("1")
    alice.page.reload()
    expect(alice.channel("Bob").locator(".badge")).to_have_text("1")
    assert alice.errors == bob.errors == []


def test_group_events_roles_and_a_removed_member(
    people: People, shots: Shots, server: WebServer
) -> None:
    alice, bob, carol = people("alice"), people("bob"), people("carol")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")
    carol.sign_up(unique("carol"), "Carol")
    alice.befriend(bob, "Bob", "Alice")
    alice.befriend(carol, "Carol", "Alice")

    alice.create_group("Book club", friends=["Bob", "Carol"])
    expect(system_line(alice, "You created the group “Book club”")).to_have_count(1)
    expect(system_line(alice, "You added")).to_contain_text("Bob")
    carol.open("Book club")
    expect(system_line(carol, "Alice added")).to_contain_text("you")
    carol.send("Hello readers")
    bob.open("Book club")
    bob.expect_message("Hello readers")
    expect(bob.status).to_have_text("3 members")

    # The creator is the admin: she renames the group; every member sees it as it happens.
    dialog = group_dialog(alice)
    expect(dialog.locator("li.member").filter(has_text="You")).to_contain_text("admin")
    dialog.get_by_label("Group name").fill("Readers")
    dialog.get_by_role("button", name="Rename").click()
    expect(bob.page.locator("#conversation-title")).to_have_text("Readers")
    expect(system_line(bob, "Alice renamed the group to “Readers”")).to_have_count(1)
    expect(carol.page.locator("#conversation-title")).to_have_text("Readers")

    # Bob becomes an admin; adding members becomes admins-only.
    dialog.get_by_role("button", name="Make Bob an admin").click()
    expect(system_line(bob, "Alice made you an admin")).to_have_count(1)
    dialog.get_by_label("Every member can add members").uncheck()
    expect(system_line(carol, "Alice made adding members admin-only")).to_have_count(1)
    shots(alice, "group-dialog-admin")
    alice.close_dialog()
    carol_dialog = group_dialog(carol)
    expect(carol_dialog.get_by_text("Only admins can add members to this group.")).to_be_visible()
    expect(carol_dialog.get_by_role("button", name="Add member")).to_be_hidden()
    expect(carol_dialog.get_by_role("button", name="Remove Bob from the group")).to_have_count(0)
    carol.close_dialog()

    # Bob, now an admin, removes Carol: she sees it, on a phone, and her chat is read-only.
    carol.page.set_viewport_size(PHONE)
    bob.page.set_viewport_size(PHONE)  # the dialog on a phone too
    bob_dialog = group_dialog(bob)
    expect(bob_dialog.locator("li.member").filter(has_text="You")).to_contain_text("admin")
    box = bob_dialog.get_by_role("button", name="Remove Carol from the group").bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    shots(bob, "phone-group-dialog")
    bob_dialog.get_by_role("button", name="Remove Carol from the group").click()
    expect(bob_dialog.locator("li.member")).to_have_count(2)
    bob.close_dialog()
    bob.page.set_viewport_size({"width": 1100, "height": 720})
    expect(bob.status).to_have_text("2 members")
    expect(system_line(alice, "Bob removed Carol")).to_have_count(1)
    expect(alice.status).to_have_text("2 members")
    notice = carol.page.locator(".removed-note")
    expect(notice).to_have_text(
        "Bob removed you from this group: you can no longer send messages here."
    )
    expect(carol.page.locator("#conversation-title")).to_have_text("Readers")
    expect(carol.composer).to_be_hidden()
    expect(carol.page.get_by_role("button", name="Members")).to_be_hidden()
    expect(carol.status).to_have_text("You are not a member")
    expect(carol.page.get_by_role("button", name="Message actions")).to_have_count(0)
    expect(system_line(carol, "Bob removed you")).to_have_count(1)
    carol.expect_message("Hello readers")  # what was said stays readable
    shots(carol, "phone-removed")
    carol.page.wait_for_timeout(500)  # receipts go out 150 ms after a render
    refused = [f for f in carol.trail if '"not_a_member"' in f]
    assert refused == []  # no receipt (nor anything) was sent to the group after removal

    # Bob still knows who Carol was after a reload, though her profile is out of his reach
    # now (they shared only this group).
    bob.page.reload()
    expect(bob.channel("Readers").locator(".channel-preview")).to_have_text("You removed Carol")
    bob.open("Readers")
    expect(bob.page.locator("li.msg .sender").filter(has_text="Carol")).to_have_count(1)
    expect(system_line(bob, "You removed Carol")).to_have_count(1)

    # Bob leaves: Alice sees it; Bob's chat is read-only too.
    bob_dialog = group_dialog(bob)
    bob_dialog.get_by_role("button", name="Leave group").click()
    bob_dialog.get_by_role("button", name="Leave", exact=True).click()
    expect(bob.page.get_by_role("dialog")).to_have_count(0)
    expect(bob.page.locator(".removed-note")).to_contain_text("You left this group")
    expect(system_line(alice, "Bob left")).to_have_count(1)
    expect(alice.status).to_have_text("1 member")
    shots(alice, "group-after-leaving")
    assert alice.errors == bob.errors == carol.errors == []


def test_replies_edits_deletes_and_reactions(
    people: People, shots: Shots, server: WebServer
) -> None:
    alice, bob = people("alice"), people("bob")
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")
    alice.start_chat(bob.username)
    alice.send("Lunch at noon?")
    alice.send("oops, wrong chat")
    bob.open("Alice")
    bob.expect_message("oops, wrong chat")

    # A reply quotes the message it answers, on both sides.
    message_menu(bob, "Lunch at noon?").get_by_role("menuitem", name="Reply").click()
    expect(bob.page.locator("#composer-context")).to_contain_text("Reply to Alice")
    bob.send("Noon is fine")
    for person, author in ((alice, "You"), (bob, "Alice")):
        quote = person.message("Noon is fine").locator(".quote")
        expect(quote).to_contain_text("Lunch at noon?")
        expect(quote.locator(".quote-sender")).to_have_text(author)
    expect(bob.page.locator("#composer-context")).to_be_hidden()

    # Only the sender may edit; the edit shows "edited" everywhere, in the quote too.
    menu = message_menu(bob, "Lunch at noon?")
    expect(menu.get_by_role("menuitem", name="Edit")).to_have_count(0)
    bob.page.keyboard.press("Escape")
    message_menu(alice, "Lunch at noon?").get_by_role("menuitem", name="Edit").click()
    expect(alice.composer).to_have_value("Lunch at noon?")
    alice.send("Lunch at one?")
    for person in (alice, bob):
        edited = person.message("Lunch at one?")
        expect(edited).to_have_count(1)
        expect(edited.locator(".edited")).to_have_text("edited")
        expect(person.message("Lunch at noon?")).to_have_count(0)
        expect(person.message("Noon is fine").locator(".quote-text")).to_have_text("Lunch at one?")

    # Delete for everyone leaves a tombstone.
    menu = message_menu(alice, "oops, wrong chat")
    menu.get_by_role("menuitem", name="Delete for everyone", exact=True).click()
    menu.get_by_role("menuitem", name="Delete for everyone now").click()
    expect(bob.message("This message was deleted")).to_have_count(1)
    expect(alice.message("You deleted this message")).to_have_count(1)
    expect(bob.message("oops, wrong chat")).to_have_count(0)

    # Reactions: one per person, counted under the bubble; clicking yours takes it back.
    message_menu(bob, "Lunch at one?").get_by_role("menuitem", name="React with 👍").click()
    chips = alice.message("Lunch at one?").locator(".reaction")
    expect(chips).to_have_count(1)
    expect(chips.first).to_have_text("👍1")
    message_menu(alice, "Lunch at one?").get_by_role("menuitem", name="React with 👍").click()
    expect(bob.message("Lunch at one?").locator(".reaction")).to_have_text(["👍2"])
    message_menu(bob, "Lunch at one?").get_by_role("menuitem", name="React with ❤️").click()
    expect(alice.message("Lunch at one?").locator(".reaction")).to_have_text(["👍1", "❤️1"])
    shots(alice, "reactions")
    bob.message("Lunch at one?").locator(".reaction.mine").click()  # takes his ❤️ back
    expect(alice.message("Lunch at one?").locator(".reaction")).to_have_text(["👍1"])

    # After a reload, history gives the current state: edited text, tombstone, reactions.
    bob.page.reload()
    expect(bob.page.locator("#conversation-title")).to_have_text("Alice")
    expect(bob.message("Lunch at one?").locator(".edited")).to_have_text("edited")
    expect(bob.message("Lunch at one?").locator(".reaction")).to_have_text(["👍1"])
    expect(bob.message("This message was deleted")).to_have_count(1)
    expect(bob.message("Noon is fine").locator(".quote-text")).to_have_text("Lunch at one?")
    expect(bob.page.locator("ol.messages li.msg")).to_have_count(3)  # events are no lines

    # On a phone the menu fits the screen.
    bob.page.set_viewport_size(PHONE)
    menu = message_menu(bob, "Lunch at one?")
    box = menu.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    shots(bob, "phone-menu")
    assert alice.errors == bob.errors == []


RULES = """
async () => {
  const { Store } = await import("/web/js/store.js");
  const me = { user_id: "10", device_id: "11", username: "me" };
  const empty = () => ({ cursor: "0", channels: {}, receipts: {}, outbox: [], drafts: [] });
  let seq = 0;
  const msg = (id, sender, extra = {}, channel = "g:1") => ({
    type: "msg", seq: String(++seq), message_id: String(id), channel_id: channel,
    sender_id: String(sender), sender_device_id: "1", client_msg_id: `c${id}`,
    body: `b${id}`, ts: 1, ...extra,
  });
  const out = {};
  const s = new Store(me, empty());
  s.onWelcome({ cursor: "0" });
  s.onSynced();
  const group = {
    channel_id: "g:1", kind: "group", name: "G", member_ids: ["10", "20", "30"],
    admin_ids: ["10"], members_can_add: true, last_message_id: "105", read_upto: "100",
    unread: 3, receipts: [
      { user_id: "20", delivered_upto: "104", read_upto: "102" },
      { user_id: "30", delivered_upto: "0", read_upto: "0" },
    ],
  };
  // Live messages before the list came: the list's count replaces them, later ones add.
  s.onInbox(msg(104, 20));
  s.onInbox(msg(106, 20));
  s.setChannels([group]);
  out.unreadFromList = s.meta["g:1"].unread;  // 3 (server) + 1 (106, after the list)
  s.onInbox(msg(105, 30));  // counted by the list already
  s.onInbox(msg(107, 20, { event: { type: "renamed", name: "H" } }));  // events never count
  out.unreadAfter = s.meta["g:1"].unread;
  out.marks = s.receipts["g:1"];
  out.renamed = s.channels.get("g:1").name;
  out.system = s.messagesOf("g:1").filter((m) => m.event).length;

  // Edits, deletes and reactions change their target; they are no lines of their own.
  s.onInbox(msg(110, 10, { body: "hello" }));
  s.onInbox(msg(111, 10, { body: "hello!", event: { type: "edit", message_id: "110" } }));
  const react = (id, sender, emoji) =>
    s.onInbox(msg(id, sender, { body: "", event: { type: "reaction", message_id: "110", emoji } }));
  react(112, 20, "👍");
  react(113, 20, "😂");
  react(114, 30, "👍");
  react(115, 30, "");
  const target = s.messages.get("g:1").get("110");
  out.edited = [target.body, Boolean(target.edited_at)];
  out.reactions = target.reactions;
  s.onInbox(msg(116, 10, { body: "", event: { type: "delete", message_id: "110" } }));
  s.onInbox(msg(117, 10, { body: "again", event: { type: "edit", message_id: "110" } }));
  out.deleted = [target.deleted, target.body, target.reactions ?? null];
  out.lines = s.messagesOf("g:1").map((m) => m.message_id);
  out.unreadAtEnd = s.meta["g:1"].unread;

  // Membership: Bob (20) made admin, Carol (30) removed, then me.
  s.onInbox(msg(120, 10, { event: { type: "admin_added", user_id: "20" } }));
  s.onInbox(msg(121, 20, { event: { type: "member_removed", user_id: "30" } }));
  out.afterRemoval = [s.channels.get("g:1").member_ids, s.channels.get("g:1").admin_ids];
  s.onInbox(msg(122, 20, { event: { type: "member_removed", user_id: "10" } }));
  out.removed = s.channels.get("g:1").removed;
  // A membership event names people as they were: a name for someone never looked up.
  s.onInbox(msg(90, 20, { event: { type: "member_left", user_id: "40", names: { "40": "Dan" } } }));
  out.named = s.displayName("40");
  s.setChannels([]);  // the server's list no longer names it: the chat stays, read-only
  out.kept = s.channels.has("g:1");
  out.readAfterRemoval = s.markRead("g:1");
  return out;
}
"""


def test_channel_event_rules(browser: Browser, server: WebServer) -> None:
    """events.js without a second person: the list's counts, events on messages and groups."""
    page = browser.new_page()
    try:
        page.goto(server.url + "/")
        out: dict[str, Any] = page.evaluate(RULES)
    finally:
        page.close()
    assert out["unreadFromList"] == 4
    assert out["unreadAfter"] == 4
    assert out["marks"] == {
        "20": {"delivered": "104", "read": "102"},
        "30": {"delivered": None, "read": None},
    }
    assert (out["renamed"], out["system"]) == ("H", 1)
    assert out["edited"] == ["hello!", True]
    assert out["reactions"] == {"20": "😂"}  # one per person; 30 took theirs back
    assert out["deleted"] == [True, "", None]  # no edit after a delete
    assert out["lines"] == ["104", "105", "106", "107", "110"]
    assert out["unreadAtEnd"] == 4
    assert out["afterRemoval"] == [["10", "20"], ["10", "20"]]
    assert out["removed"] == {"how": "member_removed", "by": "20"}
    assert out["kept"] is True
    assert out["readAfterRemoval"] is None
    assert out["named"] == "Dan"


@pytest.mark.parametrize("server_env", [{"TIDINGS_EDIT_WINDOW_S": "0"}])
def test_an_edit_the_server_refuses_is_said_and_changes_nothing(
    people: People, shots: Shots
) -> None:
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "Dinner at eight")
    # The page offers Edit for 15 minutes; this server's window is 0 s: `too_late`.
    message_menu(alice, "Dinner at eight").get_by_role("menuitem", name="Edit").click()
    alice.send("Dinner at nine")
    expect(alice.page.locator("#notice")).to_have_text(
        "Too late to edit: a message can be edited for 15 minutes after it was sent."
    )
    shots(alice, "edit-refused")
    for person in (alice, bob):
        expect(person.message("Dinner at eight")).to_have_count(1)
        expect(person.message("Dinner at eight").locator(".edited")).to_have_count(0)
        expect(person.message("Dinner at nine")).to_have_count(0)
    assert alice.stored_state()["outbox"] == []  # dropped, not sent again
    assert alice.errors == bob.errors == []
