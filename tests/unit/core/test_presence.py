from tidings.core.presence import PresenceChange, PresenceTracker

WINDOW = 30_000


def test_first_device_brings_the_user_online_once() -> None:
    tracker = PresenceTracker(WINDOW)
    assert tracker.connect(1, 1_000) == PresenceChange(1, "online", 1_000)
    assert tracker.connect(1, 2_000) is None  # a second device


def test_offline_after_the_window_with_last_seen() -> None:
    tracker = PresenceTracker(WINDOW)
    tracker.connect(1, 0)
    tracker.disconnect(1, last_heard=5_000)
    assert tracker.sweep(5_000 + WINDOW - 1) == []
    assert tracker.sweep(5_000 + WINDOW) == [PresenceChange(1, "offline", 5_000)]
    assert not tracker.is_online(1)


def test_reconnect_inside_the_window_causes_no_flap() -> None:
    tracker = PresenceTracker(WINDOW)
    tracker.connect(1, 0)
    tracker.disconnect(1, last_heard=1_000)
    assert tracker.connect(1, 10_000) is None
    assert tracker.sweep(10_000 + 2 * WINDOW) == []
    assert tracker.is_online(1)


def test_user_stays_online_while_any_device_is_connected() -> None:
    tracker = PresenceTracker(WINDOW)
    tracker.connect(1, 0)
    tracker.connect(1, 0)
    tracker.disconnect(1, last_heard=100)
    assert tracker.sweep(10 * WINDOW) == []
    tracker.disconnect(1, last_heard=200)
    assert tracker.sweep(200 + WINDOW) == [PresenceChange(1, "offline", 200)]
