# The two commands of the README. Both set everything up first (idempotent), on a fresh machine.
PY := .venv/bin/python

.PHONY: setup demo test test-slow bench soak clean check-ml1m

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

# The committed ML-1M models' metrics.json, recomputed through the generic trainer input (the ML-1M adapter).
check-ml1m: setup
	$(PY) -m models.data --out results/tmp/ml-1m-events
	for m in v3 v2 v1 cut2001; do \
	  $(PY) -m models.evaluate --model models/sasrec/$$m --events results/tmp/ml-1m-events/events.parquet --check || exit 1; \
	done
