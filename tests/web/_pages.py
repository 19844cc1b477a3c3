"""One person's browser tab, driven the way a person uses it: labels, roles and keys."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, WebSocket, expect
from websockets.sync.client import connect

PASSWORD = "correct horse battery"
WAIT_MS = 15_000
TRAIL_FRAMES = 80  # the last WebSocket frames each page keeps for a failure's report
expect.set_options(timeout=WAIT_MS)


def _exactly(text: str) -> re.Pattern[str]:
    return re.compile(f"^{re.escape(text)}$")


@dataclass
class ChatPage:
    who: str
    page: Page
    base_url: str
    username: str = ""
    user_id: str = ""

    def __post_init__(self) -> None:
        self.errors: list[str] = []
        self.trail: deque[str] = deque(maxlen=TRAIL_FRAMES)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("websocket", self._follow)
        self.page.set_default_timeout(WAIT_MS)

    def _follow(self, socket: WebSocket) -> None:
        """Keep the frames this page sends and receives (shown when a test fails)."""
        start = time.monotonic()

        def note(way: str) -> Callable[[str | bytes], None]:
            def add(payload: str | bytes) -> None:
                text = payload if isinstance(payload, str) else f"<{len(payload)} bytes>"
                self.trail.append(f"{time.monotonic() - start:8.3f} {way} {text[:300]}")

            return add

        self.trail.append(f"   0.000 open {socket.url}")
        socket.on("framesent", note(">>"))
        socket.on("framereceived", note("<<"))
        socket.on("close", lambda _: self.trail.append("         closed"))

    # --- account ----------------------------------------------------------------------

    def sign_up(self, username: str, display_name: str) -> None:
        self.page.goto(self.base_url + "/")
        self.page.get_by_role("button", name="Create an account").click()
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Display name (optional)").fill(display_name)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign up").click()
        expect(self.page.locator("#my-user-id")).to_have_text(re.compile(r"^[0-9]+$"))
        self.username = username
        self.user_id = self.page.locator("#my-user-id").inner_text()

    def log_in(self, password: str = PASSWORD) -> None:
        self.page.get_by_label("Username").fill(self.username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in", exact=True).click()

    def log_out(self) -> None:
        self.page.get_by_role("button", name="Log out").click()
        expect(self.page.get_by_role("heading", name="Log in")).to_be_visible()

    # --- the channel list -------------------------------------------------------------

    def channel(self, title: str) -> Locator:
        """The button of a channel in the list (its accessible name starts with the title)."""
        return self.page.locator("#channel-list .channel").filter(
            has=self.page.locator(".channel-name", has_text=title)
        )

    def open(self, title: str) -> None:
        self.channel(title).click()
        expect(self.page.locator("#conversation-title")).to_have_text(title)

    def start_chat(self, username: str, before_submit: Callable[[], object] = lambda: None) -> None:
        """ "New chat" with the user of exactly this username."""
        self.page.get_by_role("button", name="New chat").click()
        dialog = self.page.get_by_role("dialog")
        expect(dialog.get_by_label("Username")).to_be_focused()
        dialog.get_by_label("Username").fill(username)
        before_submit()
        dialog.get_by_role("button", name="Start chat").click()
        expect(dialog).to_have_count(0)

    def create_group(
        self,
        name: str,
        friends: Sequence[str] = (),
        invite: Sequence[str] = (),
    ) -> None:
        """A group with some friends (display names, ticked) and others invited by username."""
        self.page.get_by_role("button", name="New group").click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_label("Group name").fill(name)
        for friend in friends:
            dialog.get_by_label(friend, exact=True).check()
        dialog.get_by_label("Invite others by username").fill(", ".join(invite))
        dialog.get_by_role("button", name="Create group").click()
        expect(dialog).to_have_count(0)
        expect(self.page.locator("#conversation-title")).to_have_text(name)

    def add_member(self, username: str, outcome: str) -> None:
        """ "Members" → add by username; `outcome` is what the page says ("... was added.")."""
        self.page.get_by_role("button", name="Members").click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_label("Username").fill(username)
        dialog.get_by_role("button", name="Add member").click()
        expect(dialog.locator(".form-result")).to_have_text(outcome)

    # --- friends, requests, settings --------------------------------------------------

    def refresh_lists(self) -> None:
        """What the page does when its window gets focus: friends, requests, invites."""
        self.page.evaluate("() => window.dispatchEvent(new Event('focus'))")

    def send_friend_request(self, username: str) -> None:
        self.page.get_by_role("button", name="Friends").click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_label("Username").fill(username)
        dialog.get_by_role("button", name="Send friend request").click()
        expect(dialog.locator(".form-result")).to_contain_text("Friend request sent to")
        self.close_dialog()

    @property
    def requests(self) -> Locator:
        """The sidebar's list of friend requests and group invites waiting for an answer."""
        return self.page.locator("#requests")

    def accept_friend(self, display_name: str) -> None:
        self.refresh_lists()
        self.requests.get_by_role("button", name=f"Accept {display_name}").click()
        expect(self.requests.get_by_role("button", name=f"Accept {display_name}")).to_have_count(0)

    def befriend(self, other: ChatPage, other_name: str, my_name: str) -> None:
        """This person asks `other` to be friends and `other` accepts; both pages know."""
        self.send_friend_request(other.username)
        other.accept_friend(my_name)
        self.refresh_lists()
        self.page.get_by_role("button", name="Friends").click()
        dialog = self.page.get_by_role("dialog")
        expect(dialog.get_by_role("list", name="Friends", exact=True)).to_contain_text(other_name)
        self.close_dialog()

    def open_settings(self) -> Locator:
        self.page.get_by_role("button", name="Settings").click()
        dialog = self.page.get_by_role("dialog")
        expect(dialog.get_by_role("heading", name="Settings")).to_be_visible()
        return dialog

    @property
    def auth_message(self) -> Locator:
        return self.page.locator("#auth-message")

    def close_dialog(self) -> None:
        self.page.keyboard.press("Escape")
        expect(self.page.get_by_role("dialog")).to_have_count(0)

    def search(self, words: str) -> Locator:
        self.page.get_by_role("searchbox", name="Search messages").fill(words)
        self.page.keyboard.press("Enter")
        results = self.page.locator(".search-results .result")
        expect(results.first).to_be_visible()
        return results

    # --- the open conversation --------------------------------------------------------

    @property
    def composer(self) -> Locator:
        return self.page.get_by_role("textbox", name="Message", exact=True)

    def send(self, text: str) -> None:
        self.composer.fill(text)
        self.composer.press("Enter")
        expect(self.composer).to_have_value("")

    def message(self, text: str) -> Locator:
        """Messages of the open conversation whose body is exactly `text`."""
        return self.page.locator("ol.messages li.msg").filter(
            has=self.page.locator(".body", has_text=_exactly(text))
        )

    def expect_message(self, text: str) -> Locator:
        found = self.page.locator("ol.messages li.msg .body").filter(has_text=_exactly(text))
        expect(found).to_have_count(1)  # there, and exactly once
        return found

    def tick(self, text: str) -> Locator:
        return self.message(text).locator(".tick")

    @property
    def status(self) -> Locator:
        return self.page.locator("#conversation-status")

    @property
    def banner(self) -> Locator:
        return self.page.locator("#banner")

    # --- storage ----------------------------------------------------------------------

    def stored_session(self) -> dict[str, Any]:
        session: dict[str, Any] = json.loads(
            self.page.evaluate("() => localStorage.getItem('tidings.session')")
        )
        return session

    def stored_state(self) -> dict[str, Any]:
        raw = self.page.evaluate(
            "() => localStorage.getItem('tidings.device.' + "
            "JSON.parse(localStorage.getItem('tidings.session')).device_id)"
        )
        state: dict[str, Any] = json.loads(raw)
        return state

    def wait_stored_cursor(self, at_least: int) -> int:
        deadline = time.monotonic() + WAIT_MS / 1000
        while True:
            cursor = int(self.stored_state()["cursor"])
            if cursor >= at_least or time.monotonic() > deadline:
                return cursor
            time.sleep(0.1)


def unique(prefix: str) -> str:
    """A username no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def begin_chat(alice: ChatPage, bob: ChatPage, first: str) -> None:
    """Alice and Bob sign up; Alice starts a 1:1 chat with ``first``, and Bob opens it."""
    alice.sign_up(unique("alice"), "Alice")
    bob.sign_up(unique("bob"), "Bob")
    alice.start_chat(bob.username)
    alice.send(first)
    bob.open("Alice")
    bob.expect_message(first)


def send_many(base_url: str, username: str, channel_id: str, bodies: list[str]) -> None:
    """Another device of ``username`` sends ``bodies`` over the WebSocket, each acked."""
    with httpx.Client(base_url=base_url, trust_env=False) as http:
        login = http.post("/v1/sessions", json={"username": username, "password": PASSWORD})
        assert login.status_code == 201, login.text
        session = login.json()
    with connect(session["chat_url"], open_timeout=5, proxy=None) as ws:
        ws.send(json.dumps({"type": "hello", "token": session["access_token"], "cursor": "0"}))
        while json.loads(ws.recv(timeout=5))["type"] != "synced":
            pass
        for i, body in enumerate(bodies):
            frame = {"client_msg_id": f"many-{uuid.uuid4().hex}-{i}", "channel_id": channel_id}
            ws.send(json.dumps({"type": "send", **frame, "body": body}))
        acked = 0
        while acked < len(bodies):
            answer = json.loads(ws.recv(timeout=10))
            assert answer["type"] != "error", answer
            acked += answer["type"] == "ack"
