# The two commands of the README. Both set everything up first (idempotent), on a fresh machine.
PY := .venv/bin/python

.PHONY: setup demo test test-slow bench soak clean

setup:
	bash scripts/bootstrap.sh

demo: setup
	$(PY) -m jobs.replay

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m bench.hot_path

# 30 minutes at a steady load: RSS, state size, consumer lag, TTL eviction (bench/results/soak.*).
soak: setup
	$(PY) -m bench.soak --minutes 30

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf build .venv data results/tmp
