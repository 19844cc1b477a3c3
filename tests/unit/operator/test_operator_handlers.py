"""The kopf registration: one reconcile body for create, update and resume, under the
handler ids earlier operators used (kopf names its progress annotations by them, so an
upgraded operator carries on with a retry an older one began)."""

from __future__ import annotations

import kopf

from tidings_operator.handlers import chatcluster


def test_one_body_is_registered_for_create_update_and_resume_under_the_old_ids() -> None:
    registry = kopf.OperatorRegistry()
    chatcluster.register(registry)
    changing = registry._changing.get_all_handlers()
    by_id = {h.id: h for h in changing}
    assert set(by_id) == {"chatcluster_create", "chatcluster_update/spec", "chatcluster_resume"}
    assert {h.fn for h in changing} == {chatcluster.chatcluster_reconcile}
    assert by_id["chatcluster_update/spec"].field == ("spec",)
