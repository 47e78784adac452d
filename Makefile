# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
.PHONY: setup model demo test bench lint clean

setup:
	@bash scripts/setup.sh

model: setup
	@.venv/bin/python -m devstack train

demo: model
	@.venv/bin/python -m devstack demo

test: setup model
	@bash scripts/test.sh

bench: setup model
	@.venv/bin/python -m devstack.bench
	@.venv/bin/python -m devstack.bench_callbacks --suite
	@.venv/bin/python -m devstack.bench_home

lint: setup
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

clean:
	rm -rf models reports var .pytest_cache
