# Two commands do all the set-up on a fresh machine:
#   make up     install and run Tidings on its embedded default (`tidings up`)
#   make test   install everything, start the real services, run all tests, stop them
.PHONY: up test venv lint testenv-up testenv-down clean

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

testenv-up: venv
	bash e2e/env/up.sh

testenv-down:
	bash e2e/env/down.sh

clean: testenv-down
	rm -rf .testenv
