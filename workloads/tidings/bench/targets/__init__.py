"""The servers under test, each started as its own process(es), one module per target:
Tidings embedded (`tidings up`, :mod:`.embedded`), a Tidings cluster (`tidings
migrate/api/chat` on PostgreSQL, Cassandra and Kafka, :mod:`.cluster`), the baseline relay
and the floor (:mod:`.baseline`), and Centrifugo (:mod:`.centrifugo`); what they share
(the process, the :class:`Target` interface, the bench environment) is in :mod:`.base`."""

from tidings.bench.targets.base import (
    BENCH_ENV,
    JWT_SECRET,
    Proc,
    SinglePortTarget,
    Target,
    drain,
    free_port,
    rmtree,
    stop_all,
    tempdir,
    tidings_command,
    wait_http,
)
from tidings.bench.targets.baseline import Baseline, Floor
from tidings.bench.targets.centrifugo import (
    CENTRIFUGO_API_KEY,
    CENTRIFUGO_CHANNEL,
    CENTRIFUGO_SECRET,
    Centrifugo,
    centrifugo_binary,
)
from tidings.bench.targets.cluster import Cluster, read_testenv
from tidings.bench.targets.embedded import (
    IMPORTED_FROM,
    Embedded,
    EmbeddedRef,
    git_commit,
    ref_hidden_modules,
)

__all__ = [
    "BENCH_ENV",
    "CENTRIFUGO_API_KEY",
    "CENTRIFUGO_CHANNEL",
    "CENTRIFUGO_SECRET",
    "IMPORTED_FROM",
    "JWT_SECRET",
    "Baseline",
    "Centrifugo",
    "Cluster",
    "Embedded",
    "EmbeddedRef",
    "Floor",
    "Proc",
    "SinglePortTarget",
    "Target",
    "centrifugo_binary",
    "drain",
    "free_port",
    "git_commit",
    "read_testenv",
    "ref_hidden_modules",
    "rmtree",
    "stop_all",
    "tempdir",
    "tidings_command",
    "wait_http",
]
