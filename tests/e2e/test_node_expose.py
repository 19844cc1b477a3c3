"""Reaching the cluster from outside, over TLS, and scaling down from kubectl, on the real
node (``e2e/env/node.sh``).

A ChatCluster with ``spec.chat.expose.mode: nodePort`` and ``spec.tls.secretName``: each
chat pod on a node port of its own, the API on another, the servers ending TLS with the
Secret. Clients on the host — outside the pod network, with no cluster DNS — log in on
the API's node port over HTTPS, are sent to ``wss://<node>:<port>`` and chat, trusting only
the test's CA. Then:

- the Secret is replaced: open sockets live on, new ones get the new certificate;
- ``spec.tls.issuerRef`` names a CA Issuer: cert-manager's controller (built from its Go
  module by e2e/env/certmanager.sh) issues the certificate into the same Secret, and the
  servers take it up the same way;
- ``kubectl scale chatcluster --replicas=1`` from 3, autoscaling off: one chat server
  drains at a time, and the next only when the last one's clients are back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from behaviour._certs import Leaf, TestCA, peer_serial
from behaviour._harness import Account, WsClient, new_account
from behaviour._load import percentile, record

from ._drills import (
    BACK_WITHIN_S,
    Installed,
    answers,
    assert_only_acks,
    installation,
    outage_report,
    start_load,
    wait_ready,
)
from ._node import NodeClients, Platform, condition, example_for_node, pod_ready

pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

REPLICAS = 3
SECRET = "chat-tls"
ROTATED_WITHIN_S = 120.0  # the kubelet's sync (10 s here, ~1 min by default) + a reload (10 s)


class Site:
    """What the test knows of its installation: the node's address, the ports, the CA."""

    def __init__(self, platform: Platform) -> None:
        node = platform.get("nodes")["items"][0]
        self.node_ip = next(
            a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"
        )
        self.base_port = 30100 + 10 * random.randrange(0, 150)
        self.api_port = self.base_port + 9
        self.ca = TestCA.new("Tidings e2e CA")
        self.leaf = self.ca.issue(self.node_ip)

    @property
    def api_url(self) -> str:
        return f"https://{self.node_ip}:{self.api_port}"

    def chat_url(self, ordinal: int) -> str:
        return f"wss://{self.node_ip}:{self.base_port + ordinal}/v1/ws"


def tls_secret(leaf: Leaf) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": leaf.cert_pem.decode(), "tls.key": leaf.key_pem.decode()},
    }


@pytest.fixture(scope="module")
def site(platform: Platform) -> Site:
    return Site(platform)


@pytest.fixture(scope="module")
def installed(platform: Platform, site: Site) -> Iterator[Installed]:
    manifests = example_for_node(platform.env, tag=platform.env.tags[0], target_connections=8)
    for doc in manifests:
        if doc["kind"] == "ChatCluster":
            doc["spec"]["chat"].update(
                autoscaling=False,
                replicas=REPLICAS,
                minReplicas=1,
                maxReplicas=REPLICAS,
                expose={
                    "mode": "nodePort",
                    "nodePort": {"basePort": site.base_port},
                    "api": {"nodePort": site.api_port},
                },
            )
            doc["spec"]["tls"] = {"secretName": SECRET}
    manifests.insert(0, tls_secret(site.leaf))
    with installation(platform, manifests) as installed:
        yield installed


@pytest.fixture
async def wss_clients(platform: Platform, site: Site) -> Any:
    opened = NodeClients(platform, ssl=site.ca.client_context())
    try:
        yield opened
    finally:
        await opened.close_all()


async def https_api(site: Site, context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    """The API on its node port, over HTTPS, once kube-proxy routes it."""
    verify = context or site.ca.client_context()
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=site.api_url, verify=verify, timeout=5) as probe:
        while True:
            try:
                if (await probe.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the API at {site.api_url} did not answer within 60 s")
            await asyncio.sleep(1)
    return httpx.AsyncClient(base_url=site.api_url, verify=verify, timeout=20)


async def users_on_every_server(http: httpx.AsyncClient, count: int, prefix: str) -> list[Account]:
    """``count`` users, at least one on each chat server."""
    accounts = list(await asyncio.gather(*(new_account(http, prefix) for _ in range(count))))
    for _ in range(60):
        if len({a.chat_url for a in accounts}) >= REPLICAS:
            break
        accounts[len(accounts) // 2 - 1] = await new_account(http, prefix)
    assert len({a.chat_url for a in accounts}) >= REPLICAS, "users all hash to few servers"
    return accounts


async def peer_serial_of(url: str, context: ssl.SSLContext) -> int:
    client = await WsClient.open(url, ssl=context)
    try:
        return peer_serial(client.peer_certificate)
    finally:
        await client.close()


def api_serial(site: Site, context: ssl.SSLContext) -> int:
    with (
        socket.create_connection((site.node_ip, site.api_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=site.node_ip) as tls,
    ):
        return peer_serial(tls.getpeercert(binary_form=True))


async def exchange(a: WsClient, alice: Account, b: WsClient, bob: Account, text: str) -> None:
    ack = await a.send_and_ack(f"{text} a->b", to=bob)
    got = await b.recv_until("msg", within=15, message_id=ack["message_id"])
    assert got["sender_id"] == alice.user_id
    ack = await b.send_and_ack(f"{text} b->a", to=alice)
    got = await a.recv_until("msg", within=15, message_id=ack["message_id"])
    assert got["sender_id"] == bob.user_id


async def wait_for_serial(site: Site, context: ssl.SSLContext, want: int) -> float:
    """Seconds until new connections show certificate ``want``: every chat server's node
    port, and the API's (several tries: it spreads over the api pods)."""
    started = time.monotonic()
    while True:
        seen: list[int | str] = []
        for url in [site.chat_url(i) for i in range(REPLICAS)]:
            try:
                seen.append(await peer_serial_of(url, context))
            except (OSError, ssl.SSLError) as exc:  # not (yet) verified by the new CA
                seen.append(f"{url}: {exc!r}")
        for _ in range(4):
            try:
                seen.append(await asyncio.to_thread(api_serial, site, context))
            except (OSError, ssl.SSLError) as exc:
                seen.append(f"api: {exc!r}")
        if all(s == want for s in seen):
            return time.monotonic() - started
        if time.monotonic() - started > ROTATED_WITHIN_S:
            raise AssertionError(f"new connections still see {seen}, not {want}")
        await asyncio.sleep(2)


# --- tests -------------------------------------------------------------------------------


async def test_a_client_outside_logs_in_and_chats_over_wss_on_node_ports(
    installed: Installed, site: Site, wss_clients: NodeClients
) -> None:
    await asyncio.to_thread(wait_ready, installed, REPLICAS)
    svc = installed.platform.get("service", "-n", installed.namespace, "chat-chat-0")
    assert (svc["spec"]["type"], svc["spec"]["ports"][0]["nodePort"]) == (
        "NodePort",
        site.base_port,
    )
    async with await https_api(site) as http:
        accounts = await users_on_every_server(http, 6, "wss")
        pattern = re.compile(rf"^wss://{re.escape(site.node_ip)}:(\d+)/v1/ws$")
        ports = set()
        for account in accounts:
            match = pattern.match(account.chat_url)
            assert match, f"not a node-port URL: {account.chat_url}"
            ports.add(int(match[1]))
        assert ports == {site.base_port + i for i in range(REPLICAS)}
        # Discovery names the same public URL.
        found = await http.get("/v1/discover", headers=accounts[0].auth)
        assert found.json()["chat_url"] == accounts[0].chat_url
        alice, bob = next((x, y) for x in accounts for y in accounts if x.chat_url != y.chat_url)
        a, b = await wss_clients.connect(alice), await wss_clients.connect(bob)
        assert peer_serial(a.peer_certificate) == site.leaf.serial
        await exchange(a, alice, b, bob, "over wss")
        # Plain WebSockets and untrusting clients get nowhere.
        with pytest.raises(ssl.SSLCertVerificationError):
            await WsClient.open(alice.chat_url, ssl=ssl.create_default_context())
        async with httpx.AsyncClient(verify=ssl.create_default_context()) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(site.api_url + "/readyz")


async def test_rotating_the_secret_keeps_open_sockets_and_new_ones_get_the_new_certificate(
    installed: Installed, site: Site, wss_clients: NodeClients, tmp_path: Path
) -> None:
    await asyncio.to_thread(wait_ready, installed, REPLICAS)
    context = site.ca.client_context()
    async with await https_api(site) as http:
        accounts = await users_on_every_server(http, 6, "rot")
        alice, bob = next((x, y) for x in accounts for y in accounts if x.chat_url != y.chat_url)
        a, b = await wss_clients.connect(alice), await wss_clients.connect(bob)
        assert peer_serial(a.peer_certificate) == site.leaf.serial

        new_leaf = site.ca.issue(site.node_ip)
        installed.platform.kubectl(
            "apply",
            "-n",
            installed.namespace,
            "-f",
            "-",
            stdin=yaml.safe_dump(tls_secret(new_leaf)),
        )
        took = await wait_for_serial(site, context, new_leaf.serial)

        # The sockets opened before the rotation are the same ones, and still carry messages.
        await exchange(a, alice, b, bob, "after the rotation")
        assert peer_serial(a.peer_certificate) == site.leaf.serial
        assert peer_serial(b.peer_certificate) == site.leaf.serial
        record(tmp_path, "rotate-secret", {"new_certificate_everywhere_s": round(took, 1)})
        site.leaf = new_leaf


async def test_cert_manager_issues_from_a_ca_issuer_and_the_servers_take_it_up(
    installed: Installed, site: Site, wss_clients: NodeClients, tmp_path: Path
) -> None:
    """cert-manager's controller (e2e/env/certmanager.sh) issues from a CA Issuer into
    the Secret the servers already mount: no restart, new connections verify against the
    issuer's CA."""
    platform, ns = installed.platform, installed.namespace
    issuer_ca = TestCA.new("Tidings e2e issuing CA")
    ca_key = issuer_ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ca_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "issuing-ca"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": issuer_ca.cert_pem.decode(), "tls.key": ca_key.decode()},
    }
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": "ca"},
        "spec": {"ca": {"secretName": "issuing-ca"}},
    }
    platform.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump_all([ca_secret, issuer]))
    platform.kubectl(
        "patch",
        "chatcluster",
        installed.name,
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "tls": {
                        "issuerRef": {"name": "ca", "kind": "Issuer"},
                        "ipAddresses": [site.node_ip],
                    }
                }
            }
        ),
    )

    def certificate_ready() -> dict[str, Any] | None:
        found = platform.items("certificates.cert-manager.io", "-n", ns)
        ready = [c for c in found if condition(c, "Ready").get("status") == "True"]
        return ready[0] if ready else None

    cert = await asyncio.to_thread(
        platform.wait_for, "cert-manager to issue the Certificate", certificate_ready, 90, 2.0
    )
    assert cert["metadata"]["name"] == "chat-tls"
    assert cert["spec"]["secretName"] == SECRET
    assert cert["spec"]["ipAddresses"] == [site.node_ip]
    context = issuer_ca.client_context()
    secret = platform.get("secret", "-n", ns, SECRET)
    assert secret["metadata"]["annotations"]["cert-manager.io/issuer-name"] == "ca"
    issued = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    took = await wait_for_serial(site, context, issued.serial_number)
    record(tmp_path, "cert-manager", {"issued_and_served_s": round(took, 1)})
    # The rest of the module's clients trust the issuing CA now.
    site.ca = issuer_ca


class ScaleWatch:
    """Samples the chat pods in a thread: the most that were down (not Ready, or going) at
    one time, when each pod began to go, and every size the StatefulSet was given."""

    def __init__(self, installed: Installed) -> None:
        self.installed = installed
        self.most_down = 0
        self.going_since: dict[str, float] = {}
        self.sizes: list[int] = []
        self._stop = threading.Event()
        self._sampled = threading.Event()  # the first sample is in: the size before
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ScaleWatch:
        self._thread.start()
        if not self._sampled.wait(30):
            raise AssertionError("the chat pods could not be read")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        platform, ns = self.installed.platform, self.installed.namespace
        while not self._stop.is_set():
            try:
                pods = self.installed.chat_pods()
                sts = platform.get("statefulset", "-n", ns, "chat-chat")
            except AssertionError:
                continue
            now = time.monotonic()
            down = 0
            for pod in pods:
                if not pod_ready(pod):
                    down += 1
                if pod["metadata"].get("deletionTimestamp"):
                    self.going_since.setdefault(pod["metadata"]["name"], now)
            self.most_down = max(self.most_down, down)
            size = int(sts["spec"]["replicas"])
            if not self.sizes or self.sizes[-1] != size:
                self.sizes.append(size)
            self._sampled.set()
            self._stop.wait(0.3)


async def test_drill_kubectl_scale_three_to_one_drains_one_server_at_a_time(
    installed: Installed, site: Site, platform: Platform, tmp_path: Path
) -> None:
    await asyncio.to_thread(wait_ready, installed, REPLICAS)
    clients = NodeClients(platform, ssl=site.ca.client_context())
    try:
        async with await https_api(site, site.ca.client_context()) as http:
            accounts = await users_on_every_server(http, 12, "shrink")
            load = await start_load(http, clients, accounts)
            await asyncio.sleep(3)
            on = {
                ordinal: [d for d in load.devices if d.account.chat_url == site.chat_url(ordinal)]
                for ordinal in range(REPLICAS)
            }
            assert on[1] and on[2], f"no client on chat-1 or chat-2: {on}"
            loop = asyncio.get_running_loop()
            with ScaleWatch(installed) as watch:
                t0 = loop.time()
                await asyncio.to_thread(
                    platform.kubectl,
                    "scale",
                    "chatcluster",
                    installed.name,
                    "-n",
                    installed.namespace,
                    "--replicas=1",
                )
                await asyncio.to_thread(wait_ready, installed, 1)
                took = loop.time() - t0
                await asyncio.sleep(3)
            await load.finish()

        def back_at(devices: list[Any]) -> float | None:
            times = [d.welcomes[0] for d in devices if d.welcomes]
            return max(times) if len(times) == len(devices) else None

        second_went = watch.going_since.get("chat-chat-1")
        outages = [o for d in load.devices for o in d.outages()]
        result = {
            "clients": len(load.devices),
            "clients_per_server": {f"chat-chat-{o}": len(d) for o, d in on.items()},
            "sizes": watch.sizes,
            "most_chat_pods_down_at_once": watch.most_down,
            "scale_down_s": round(took, 1),
            "chat_2_clients_back_before_chat_1_went_s": (
                round(second_went - back, 1)
                if second_went is not None and (back := back_at(on[2])) is not None
                else None
            ),
            "answers": answers(load),
            **outage_report(load.devices),
        }
        if outages:
            result["back_p50_s"] = round(percentile(outages, 50), 3)
        report = record(tmp_path, "drill-kubectl-scale", result)
        assert watch.sizes == [3, 2, 1], f"not one server at a time: {report}"
        assert watch.most_down <= 1, f"more than one chat pod down at once: {report}"
        assert back_at(on[2]) is not None and back_at(on[1]) is not None, report
        assert second_went is not None, report
        assert back_at(on[2]) <= second_went, (
            f"chat-1 went before chat-2's clients were back: {report}"
        )
        assert result["back_p99_s"] <= BACK_WITHIN_S, f"clients back too slowly: {report}"
        assert_only_acks(load, report)
        result |= await load.check_delivery()
        record(tmp_path, "drill-kubectl-scale", result)
    finally:
        await clients.close_all()
