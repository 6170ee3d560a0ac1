# The two commands of the README. Both set everything up first (idempotent), on a fresh machine.
PY := .venv/bin/python

.PHONY: setup demo test test-slow bench clean

setup:
	bash scripts/bootstrap.sh

demo: setup
	$(PY) -m jobs.replay

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m bench.hot_path

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf build .venv data results/tmp
