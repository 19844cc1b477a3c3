"""No image pull leaves the test node (issue #19): containerd sends every public
registry's pulls to a closed local port (e2e/env/node.sh), so an image that was not
imported — the chart's default before it is built, a typo — fails at once with an event
that says where it tried, instead of waiting on a network that is not there."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from ._node import Platform

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]


def test_an_image_that_was_not_imported_fails_at_once_on_this_machine(platform: Platform) -> None:
    namespace = f"pull-{uuid.uuid4().hex[:6]}"
    platform.kubectl("create", "namespace", namespace)
    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "not-imported", "namespace": namespace},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "ghcr.io/tidings-dev/tidings:0.0.0-never-built",
                        "imagePullPolicy": "Always",
                    }
                ]
            },
        }
        started = time.monotonic()
        platform.kubectl("apply", "-f", "-", stdin=json.dumps(pod))

        def failed_pull() -> str | None:
            for event in platform.items("events", "-n", namespace):
                message = str(event.get("message", ""))
                if event.get("reason") == "Failed" and "pull" in message.lower():
                    return message
            return None

        message = platform.wait_for("a failed pull", failed_pull, timeout=45)
        assert time.monotonic() - started < 45
        assert "127.0.0.1:9" in message and "connection refused" in message, message
        assert "ns=ghcr.io" in message or "ghcr.io" in message, message
    finally:
        platform.kubectl("delete", "namespace", namespace, "--wait=false")
