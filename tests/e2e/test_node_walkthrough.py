"""docs/try-it-on-the-test-node.md, run word for word on the real node (issue #19 item 8).

Every ```sh block of the page, in order, in one ``bash`` with ``set -euo pipefail`` from the
repository's root: build and import the image, ``helm install``, the Secrets and a
ChatCluster with the test node's site values, Ready, the API from the host, two users and a
message with the bundled CLI, then the page's own clean-up. ``SUFFIX`` and ``BASE_PORT``
(which the page's first block defaults) are unique to the run, so it can run beside the
other node tests. When a step fails, the page's clean-up blocks (everything under
"Clean up", which the page says is safe to run again) run anyway.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from cassandra.cluster import Cluster

from ._node import REPO, Platform

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

PAGE = REPO / "docs" / "try-it-on-the-test-node.md"
CLEANUP_HEADING = "## 7. Clean up"
RUN_TIMEOUT = 720  # seconds for the whole page (it takes ~2-4 minutes on a loaded machine)
CLEANUP_TIMEOUT = 600
_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def sh_blocks(markdown: str) -> list[str]:
    """The page's ```sh blocks, in order."""
    return _BLOCK.findall(markdown)


def page_script(steps: list[str]) -> str:
    return "set -euo pipefail\nset -x\n" + "\n".join(steps)


def run_bash(
    script: str, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def leftovers(testenv: Mapping[str, str], suffix: str) -> list[str]:
    """What of the run's data is still there: topics, keyspace, database."""
    found: list[str] = []
    admin = AIOKafkaAdminClient(bootstrap_servers=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        found += [t for t in await admin.list_topics() if t.startswith(f"tidings-{suffix}.")]
    finally:
        await admin.close()

    def keyspaces() -> list[str]:
        cluster = Cluster(
            [testenv["TIDINGS_TEST_CASSANDRA_HOSTS"]],
            port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
        )
        try:
            rows = cluster.connect().execute("SELECT keyspace_name FROM system_schema.keyspaces")
            return [r.keyspace_name for r in rows if r.keyspace_name == f"tidings_{suffix}"]
        finally:
            cluster.shutdown()

    found += await asyncio.to_thread(keyspaces)
    url = testenv["TIDINGS_TEST_POSTGRES_URL"].replace("+asyncpg", "")
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = $1", f"tidings_{suffix}"
        )
        found += [f"database {r['datname']}" for r in rows]
    finally:
        await conn.close()
    return found


def test_the_page_has_a_walkthrough_and_a_cleanup() -> None:
    text = PAGE.read_text()
    before, _, after = text.partition(CLEANUP_HEADING)
    assert after, f"{PAGE.name} has no {CLEANUP_HEADING!r} section"
    assert len(sh_blocks(before)) >= 8 and len(sh_blocks(after)) >= 4
    assert "helm install" in before and "tidings client send" in before
    assert "helm uninstall" in after and "DROP DATABASE" in after


def test_the_walkthrough_runs_word_for_word(
    platform: Platform, testenv: Mapping[str, str], tmp_path: Path
) -> None:
    text = PAGE.read_text()
    before, _, after = text.partition(CLEANUP_HEADING)
    blocks, cleanup = sh_blocks(before), sh_blocks(after)
    suffix = f"w{uuid.uuid4().hex[:6]}"
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "SUFFIX": suffix,
        # Node ports of their own: the other node tests pick from 30100-31599.
        "BASE_PORT": str(31600 + 10 * random.randrange(0, 100)),
    }
    namespace = f"chat-{suffix}"
    result: subprocess.CompletedProcess[str] | None = None
    try:
        result = run_bash(page_script(blocks + cleanup), env, RUN_TIMEOUT)
        (tmp_path / "walkthrough.log").write_text(result.stdout + result.stderr)
        assert result.returncode == 0, (
            f"the page failed (exit {result.returncode}); the end of its output:\n"
            + (result.stdout + result.stderr)[-6000:]
        )
        # The message arrived: the page's own grep printed Bob's line.
        received = [line for line in result.stdout.splitlines() if f"hello from {suffix}" in line]
        assert any('"type": "msg"' in line for line in received), result.stdout[-3000:]
        assert f"deleted topics: tidings-{suffix}.inbox" in result.stdout, result.stdout[-3000:]
        assert f"dropped keyspace tidings_{suffix}" in result.stdout, result.stdout[-3000:]
        # And the clean-up left nothing of the run behind.
        gone = platform.run("kubectl", "get", "namespace", namespace, check=False)
        assert gone.returncode != 0, f"namespace {namespace} is still there"
        releases = platform.helm("list", "--all-namespaces", "-q")
        assert f"tidings-{suffix}" not in releases.split(), releases
        left = asyncio.run(leftovers(testenv, suffix))
        assert not left, f"the clean-up left data behind: {left}"
    finally:
        if result is None or result.returncode != 0:
            again = run_bash(page_script(blocks[:1] + cleanup), env, CLEANUP_TIMEOUT)
            (tmp_path / "cleanup.log").write_text(again.stdout + again.stderr)
