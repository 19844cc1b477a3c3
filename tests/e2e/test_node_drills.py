"""helm install and kubectl drills on a real Kubernetes node (``e2e/env/node.sh``).

The way a platform team meets Tidings: ``helm install`` the chart (the CRD and the
operator, running from the daemonless-built image on the node's containerd), ``kubectl
apply`` the example ChatCluster (with this site's Kafka, Cassandra and PostgreSQL), wait
for Ready, and then run drills while clients on the host chat under a steady load:

- ``kubectl delete pod`` of a chat server: its clients are back within 10 s (p50/p99/max
  recorded), no acked message is lost;
- a new image tag: the operator replaces the chat pods one at a time, no acked message
  is lost;
- load past the autoscaling target: a chat server is added; load back down: one is
  removed again, its clients drained to the others, no acked message lost;
- ``helm uninstall`` after the ChatCluster is deleted leaves nothing of the operator's.

The tests run in file order and share one installation (a module-scoped fixture); each
drill brings its own users and load. Results are printed and written as JSON into the
test's tmp dir.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from behaviour._harness import Account, new_account
from behaviour._load import Device, Load, percentile, poll_until, record

from ._drills import (
    BACK_WITHIN_S,
    LOAD_BOUNDS,
    SEND_EVERY_S,
    Installed,
    PodWatch,
    answers,
    api_client,
    assert_only_acks,
    installation,
    outage_report,
    start_load,
    users_on_each_server,
    wait_ready,
)
from ._node import (
    NodeClients,
    Platform,
    condition,
    example_for_node,
    pod_ready,
)

pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

TARGET_CONNECTIONS = 8  # spec.chat.targetConnectionsPerPod of the test cluster


@pytest.fixture(scope="module")
def installed(platform: Platform) -> Iterator[Installed]:
    """``helm install`` + the example ChatCluster, Ready; removed again at the end."""
    manifests = example_for_node(
        platform.env, tag=platform.env.tags[0], target_connections=TARGET_CONNECTIONS
    )
    with installation(platform, manifests) as installed:
        yield installed


# --- tests -------------------------------------------------------------------------------


def test_helm_install_runs_the_operator_on_the_node(installed: Installed) -> None:
    platform = installed.platform
    pods = platform.items(
        "pods", "-n", installed.operator_namespace, "-l", "app.kubernetes.io/name=tidings"
    )
    assert len(pods) == 1 and pod_ready(pods[0]), f"operator pods: {pods}"
    assert pods[0]["spec"]["nodeName"] == platform.get("nodes")["items"][0]["metadata"]["name"]
    image = pods[0]["status"]["containerStatuses"][0]["image"]
    assert image.endswith(f"{platform.env.image}:{platform.env.tags[0]}"), image
    crd = platform.get("crd", "chatclusters.tidings.dev")
    assert condition(crd, "Established").get("status") == "True"


async def test_example_chatcluster_becomes_ready_and_clients_chat(
    installed: Installed, clients: NodeClients
) -> None:
    cc = await asyncio.to_thread(wait_ready, installed, 2)
    assert condition(cc, "KafkaReady").get("status") == "True", cc["status"]
    assert condition(cc, "CassandraReady").get("status") == "True", cc["status"]
    async with await api_client(installed) as http:
        alice, bob = await users_on_each_server(http, 2, 2, "hello")
        a, b = await clients.connect(alice), await clients.connect(bob)
        ack = await a.send_and_ack("hello from a real node", to=bob)
        got = await b.recv_until("msg", within=15, message_id=ack["message_id"])
        assert got["body"] == "hello from a real node" and got["sender_id"] == alice.user_id
        ack = await b.send_and_ack("hello back", to=alice)
        got = await a.recv_until("msg", within=15, message_id=ack["message_id"])
        assert got["body"] == "hello back" and got["sender_id"] == bob.user_id


async def test_drill_delete_a_chat_pod(
    installed: Installed, clients: NodeClients, tmp_path: Path
) -> None:
    await asyncio.to_thread(wait_ready, installed, 2)
    async with await api_client(installed) as http:
        accounts = await users_on_each_server(http, 2, 12, "del")
        load = await start_load(http, clients, accounts)
        await asyncio.sleep(3)
        victim = sorted(p["metadata"]["name"] for p in installed.chat_pods())[0]
        on_victim = [d for d in load.devices if d.account.chat_url.startswith(f"ws://{victim}.")]
        assert on_victim, "no client on the pod to delete"
        loop = asyncio.get_running_loop()
        deleted_at = loop.time()
        await asyncio.to_thread(
            installed.platform.kubectl, "delete", "pod", "-n", installed.namespace, victim
        )
        await poll_until(lambda: all(d.welcomes for d in on_victim), deleted_at + 60)
        await asyncio.to_thread(wait_ready, installed, 2)
        await asyncio.sleep(3)  # load on the cluster as it is again
        await load.finish()

        back = [d.welcomes[0] - deleted_at for d in on_victim if d.welcomes]
        result = {
            "clients": len(load.devices),
            "clients_of_deleted_pod": len(on_victim),
            "not_back": [d.account.device_id for d in on_victim if not d.welcomes],
            "answers": answers(load),
            **outage_report(load.devices),
        }
        if back:
            result |= {"since_delete_p99_s": round(percentile(back, 99), 3)}
        report = record(tmp_path, "drill-delete-pod", result)
        assert not result["not_back"], f"clients of the deleted pod never came back: {report}"
        assert result["back_max_s"] <= BACK_WITHIN_S, f"clients back too slowly: {report}"
        assert_only_acks(load, report)
        result |= await load.check_delivery()
        record(tmp_path, "drill-delete-pod", result)


async def test_drill_roll_a_new_image_tag(
    installed: Installed, clients: NodeClients, tmp_path: Path
) -> None:
    env = installed.platform.env
    new_image = f"{env.image}:{env.tags[1]}"
    await asyncio.to_thread(wait_ready, installed, 2)
    async with await api_client(installed) as http:
        accounts = await users_on_each_server(http, 2, 12, "roll")
        load = await start_load(http, clients, accounts)
        await asyncio.sleep(3)
        with PodWatch(installed, 2) as watch:
            await asyncio.to_thread(
                installed.platform.kubectl,
                "patch",
                "chatcluster",
                installed.name,
                "-n",
                installed.namespace,
                "--type=merge",
                "-p",
                f'{{"spec": {{"image": "{new_image}"}}}}',
            )

            def rolled() -> bool:
                pods = installed.chat_pods()
                images = {c["image"] for p in pods for c in p["spec"]["containers"]}
                return images == {new_image} and installed.ready(2) is not None

            await asyncio.to_thread(
                installed.platform.wait_for, "the chat pods on the new image", rolled, 300, 2.0
            )
        await asyncio.sleep(3)
        await load.finish()

        result = {
            "clients": len(load.devices),
            "most_chat_pods_not_ready_at_once": watch.most_unready,
            "images_seen": sorted(watch.images),
            "answers": answers(load),
            **outage_report(load.devices),
        }
        report = record(tmp_path, "drill-roll-image", result)
        assert watch.most_unready <= 1, f"more than one chat pod down at once: {report}"
        assert_only_acks(load, report)
        result |= await load.check_delivery()
        record(tmp_path, "drill-roll-image", result)
        rollout = installed.chatcluster()["status"]["rollout"]
        assert not rollout.get("inProgress"), rollout


async def test_drill_load_scales_up_then_down_with_a_drain(
    installed: Installed, clients: NodeClients, tmp_path: Path
) -> None:
    await asyncio.to_thread(wait_ready, installed, 2)
    async with await api_client(installed) as http:
        steady = await users_on_each_server(http, 2, 6, "steady")
        load = await start_load(http, clients, steady)
        # A burst past the target of two servers: three servers' worth of connections.
        burst_accounts = list(
            await asyncio.gather(
                *(new_account(http, "burst") for _ in range(2 * TARGET_CONNECTIONS + 2))
            )
        )
        burst = await asyncio.gather(*(clients.connect(a) for a in burst_accounts))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        cc = await asyncio.to_thread(wait_ready, installed, 3)
        scaled_up_s = loop.time() - t0
        assert cc["status"]["desiredReplicas"] == 3

        # Users the new server now serves join the steady load: the scale-down drains them.
        newest = max(p["metadata"]["name"] for p in installed.chat_pods())
        on_newest: list[Account] = []
        for _ in range(60):
            if len(on_newest) >= 3:
                break
            account = await new_account(http, "stay")
            if account.chat_url.startswith(f"ws://{newest}."):
                on_newest.append(account)
        assert on_newest, f"no new user landed on {newest}"
        drained = Load([http], clients, SEND_EVERY_S, **LOAD_BOUNDS)
        conns = await asyncio.gather(*(clients.connect(a) for a in on_newest))
        for account, conn, target in zip(on_newest, conns, steady, strict=False):
            drained.devices.append(Device(account, conn, target))
        drained.start()
        await asyncio.sleep(3)

        # Load back down: the burst leaves, the newest server is drained and removed.
        await asyncio.gather(*(c.close() for c in burst))
        t1 = loop.time()
        await asyncio.to_thread(wait_ready, installed, 2)
        scaled_down_s = loop.time() - t1
        await asyncio.sleep(3)
        await asyncio.gather(load.finish(), drained.finish())

        result = {
            "steady_clients": len(load.devices),
            "burst_clients": len(burst),
            "clients_on_drained_server": len(drained.devices),
            "scale_up_s": round(scaled_up_s, 1),
            "scale_down_s": round(scaled_down_s, 1),
            "answers": answers(load) | {f"drained:{k}": v for k, v in answers(drained).items()},
            **outage_report([*load.devices, *drained.devices]),
        }
        report = record(tmp_path, "drill-scale", result)
        assert all(d.welcomes for d in drained.devices), f"drained clients not back: {report}"
        assert result["back_max_s"] <= BACK_WITHIN_S, f"clients back too slowly: {report}"
        assert_only_acks(load, report)
        assert_only_acks(drained, report)
        result |= await load.check_delivery()
        result |= {f"drained_{k}": v for k, v in (await drained.check_delivery()).items()}
        record(tmp_path, "drill-scale", result)


def test_helm_uninstall_leaves_nothing_of_the_operators(installed: Installed) -> None:
    platform = installed.platform
    platform.kubectl("delete", "chatcluster", installed.name, "-n", installed.namespace)

    def children_gone() -> bool:
        left = platform.items(
            "statefulsets,deployments,services,configmaps,poddisruptionbudgets,pods",
            "-n",
            installed.namespace,
            "-l",
            "app.kubernetes.io/managed-by=tidings-operator",
        )
        return not left

    platform.wait_for("the ChatCluster's children garbage-collected", children_gone, 120, 2.0)
    platform.helm("uninstall", installed.release, "-n", installed.operator_namespace, "--wait")

    def operator_leftovers() -> list[str]:
        left = platform.items(
            "all,roles,rolebindings,serviceaccounts,leases,configmaps",
            "-n",
            installed.operator_namespace,
            "-l",
            "app.kubernetes.io/name=tidings",
        )
        # Every Lease of the namespace: the leader Lease is the release's (the chart's).
        left += platform.items("leases", "-n", installed.operator_namespace)
        left += [
            o
            for o in platform.items("clusterroles,clusterrolebindings")
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/instance")
            == installed.release
        ]
        return [f"{o['kind']}/{o['metadata']['name']}" for o in left]

    # The operator's pod is garbage-collected after its Deployment: give it its grace.
    platform.wait_for(
        "nothing of the operator's left after helm uninstall",
        lambda: not operator_leftovers(),
        90,
        2.0,
    )
