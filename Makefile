# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
.PHONY: setup model demo test bench bench-more load lint clean

setup:
	@bash scripts/setup.sh

model: setup
	@.venv/bin/python -m devstack train

demo: model
	@.venv/bin/python -m devstack demo

test: setup model
	@bash scripts/test.sh

# One table with every target of the project (needs PostgreSQL and Redis for the callbacks row).
bench: setup model
	@.venv/bin/python -m devstack.bench

# The longer comparisons in the README: callback delivery in three configurations, whole home.
bench-more: setup model
	@.venv/bin/python -m devstack.bench_callbacks --suite
	@.venv/bin/python -m devstack.bench_home

# 200 conversations x 10 turns with pushes on the scaled-out stack, then again with a Rasa
# server and a delivery worker killed and restarted (needs PostgreSQL and Redis).
load: setup model
	@.venv/bin/python -m devstack.loadtest

lint: setup
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

clean:
	rm -rf models reports var .pytest_cache
