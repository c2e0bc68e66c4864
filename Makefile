# The two commands a new user needs (README): `make demo` and `make test`.
# Both set everything up on a fresh machine: a virtualenv with the package, and Kafka's jars.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN    := $(CURDIR)/.run
KAFKA  := $(PY) deploy/kafka/local_kafka.py
ORDERS ?= 2000
MEMBERS ?= 3

.PHONY: demo test test-all lint bench bench-budget bench-backlog bench-sandbox kafka-up kafka-down clean

# Test tools are the `dev` dependency group (PEP 735; pip >= 25.1, hence the upgrade first).
# setuptools notes every editable install of a flat layout ("Editable installation. Please be
# careful with folders ... same name as your package"): information, not a warning about this
# project, so it is filtered by its text; real warnings still show.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e '.[sandbox]' --group dev
	touch $@

$(RUN)/kafka-jars: $(VENV)/.installed deploy/kafka/pom.xml
	mkdir -p $(RUN)
	$(KAFKA) fetch
	touch $@

## demo: Kafka + sandbox + simulated warehouse events + consumer group, end to end, with progress
demo: $(RUN)/kafka-jars
	$(KAFKA) start --dir $(RUN)/kafka --port 9092
	$(VENV)/bin/fulfillment-consumer demo --bootstrap-servers 127.0.0.1:9092 --orders $(ORDERS) --members $(MEMBERS); \
	  status=$$?; $(KAFKA) stop --dir $(RUN)/kafka; exit $$status

## test: the default test suite (unit, component, integration against a real broker)
test: $(RUN)/kafka-jars
	$(VENV)/bin/pytest -m "not slow"

test-all: $(RUN)/kafka-jars
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check consumer tests bench deploy
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## bench: the consumer benchmark of issue #3 (5,000 orders, 12 partitions, 50 ms sandbox latency)
bench: $(RUN)/kafka-jars
	$(PY) bench/consumer_bench.py

## bench-budget: how the rate budget is spent (issue #10): skew, members joining, kill -9, replay
bench-budget: $(RUN)/kafka-jars
	$(PY) bench/budget_bench.py --scenario $(or $(SCENARIO),all)

## bench-backlog: issue #13, one member against 1,000,000 events: events/s per 100,000 and RSS over time
EVENTS ?= 1000000
bench-backlog: $(RUN)/kafka-jars
	$(PY) bench/backlog_bench.py --events $(EVENTS) --check

bench-sandbox: $(VENV)/.installed
	$(PY) bench/sandbox_bench.py

kafka-up: $(RUN)/kafka-jars
	$(KAFKA) start --dir $(RUN)/kafka --port 9092

kafka-down:
	$(KAFKA) stop --dir $(RUN)/kafka

clean:
	rm -rf $(RUN) $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
