# Two commands do all the set-up on a fresh machine:
#   make up     install and run Tidings on its embedded default (`tidings up`)
#   make test   install everything, start the real services, run all tests, stop them
.PHONY: up test venv lint testenv-up testenv-down clean \
	bench-tools bench-ref-tree bench-trace bench-trace-before bench-trace-after bench-relay-ref \
	bench-cluster-fanout bench-cluster-storm fleet

up: venv
	.venv/bin/tidings up

test:
	bash e2e/run-tests.sh

venv:
	bash scripts/bootstrap.sh

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache

testenv-up: venv
	bash e2e/env/up.sh

testenv-down:
	bash e2e/env/down.sh

clean: testenv-down
	rm -rf .testenv

# --- benchmarks: the message path's cost per message, before and after (docs/benchmarks.md)
# The reference ("before") is a clone of this repository at REF, run with this venv.
REF ?= 320a774
REF_TREE ?= $(abspath ../before)
TRACE_MESSAGES ?= 2000
TRACE_RATE ?= 50
TRACE_TRACED_RATE ?= 20
TRACE_OUT ?= bench-trace.json
TRACE = .venv/bin/tidings bench trace --messages $(TRACE_MESSAGES) --rate $(TRACE_RATE) \
	--traced-rate $(TRACE_TRACED_RATE)

bench-tools: venv
	command -v strace >/dev/null || (apt-get update && apt-get install -y strace)
	command -v perf >/dev/null || (apt-get update && apt-get install -y linux-perf)
	test -x .venv/bin/py-spy || .venv/bin/pip install py-spy

bench-ref-tree:
	test -d $(REF_TREE) || git clone -q . $(REF_TREE)
	git -C $(REF_TREE) fetch -q $(CURDIR)
	git -C $(REF_TREE) checkout -q $(REF)

# this tree; `make bench-trace TRACE_RATE=200 TRACE_TRACED_RATE=200` for its own rate
bench-trace: bench-tools
	$(TRACE) --out $(TRACE_OUT)

bench-trace-before: bench-tools bench-ref-tree
	$(TRACE) --ref-tree $(REF_TREE) --out docs/benchmarks/trace-before.json

bench-trace-after: bench-tools
	$(TRACE) --out docs/benchmarks/trace-after.json

# tidings (this tree), tidings-ref and the baseline relay side by side in one run
bench-relay-ref: bench-ref-tree
	.venv/bin/tidings bench relay --targets tidings,tidings-ref,baseline --ref-tree $(REF_TREE) \
		--pairs 100 --rates 50,100,150,200,500,1000 --duration 10 --drain 20 \
		--out bench-relay-ref.json

# issue #14 on the cluster (2 chat servers on the running test environment; docs/benchmarks.md)
CLUSTER_OUT ?= bench-cluster.json
bench-cluster-fanout:
	.venv/bin/tidings bench fanout --targets cluster --chats 2 --group-size 100 --rates 20 \
		--duration 30 --drain 20 --out $(CLUSTER_OUT) --append

bench-cluster-storm:
	.venv/bin/tidings bench storm --targets cluster --chats 2 --connections 10000 --workers 2 \
		--out $(CLUSTER_OUT) --append

# issue #19: the operator at fleet scale, on the running test environment's kwok nodes: 200
# chat pods on 50 nodes, scale-up, steady counts, a full paced roll (docs/operator.md, "At
# fleet scale"; ~35 min). `make fleet FLEET_ARGS="--drain-budget 30"` for another budget.
FLEET_ARGS ?=
FLEET_OUT ?= fleet.json
fleet:
	.venv/bin/python e2e/fleet/run.py --out $(FLEET_OUT) $(FLEET_ARGS)
