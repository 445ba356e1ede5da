# Tandem: `make run` starts everything on the embedded default; `make test` runs the suite.
# Both set themselves up on a fresh clone (virtual environment, install, migrations).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: install lint format run test test-compose test-unit migrate watch dlq bench simulate calibrate study calibrate-couples study-couples report-sample clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Tandem needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: install  ## migrate and start every service with its workers; Ctrl-C stops them all
	$(BIN)/tandem run

test: install  ## the whole suite (RabbitMQ and PostgreSQL on 127.0.0.1, or TEST_* URLs)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install  ## ruff: the lint rules and the format, as configured in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## rewrite the tree in the project's format and fix what ruff can
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-compose: install  ## docker-compose.yml on a real Docker Engine (started if needed), as an operator runs it (tests/compose)
	tests/compose/prepare.sh
	$(BIN)/pytest tests/compose -m compose $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

migrate: install
	$(BIN)/tandem migrate

watch: install  ## print every event on the exchange
	$(BIN)/tandem watch

bench: install  ## every benchmark on RabbitMQ and PostgreSQL (BENCH_* URLs, or 127.0.0.1); the table goes into BENCHMARKS.md (needs wrk)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

simulate: install  ## synthetic cohorts through the public API; detection report, agreement with the rules (SIM_ARGS="--per-cohort 25")
	$(BIN)/python -m bench.simulate $(SIM_ARGS)

calibrate: install  ## the thresholds of the milestone rules, on the simulator's calibration seeds (writes services/milestones/rules/thresholds.json)
	nice -n 19 $(BIN)/python -m simulation.calibrate $(CALIBRATE_ARGS)

study: install  ## the rules' figures on held-out seeds, beside the oracle's (STUDY_ARGS="--partners 500")
	nice -n 19 $(BIN)/python -m simulation.report $(STUDY_ARGS)

calibrate-couples: install  ## the thresholds of the couple rules, on the simulator's calibration seeds (writes services/milestones/rules/couple_thresholds.json)
	nice -n 19 $(BIN)/python -m simulation.calibrate_couples $(CALIBRATE_ARGS)

study-couples: install  ## the couple rules' figures on held-out seeds, beside their oracles (STUDY_ARGS="--couples 500")
	nice -n 19 $(BIN)/python -m simulation.report_couples $(STUDY_ARGS)

report-sample: install  ## docs/report-sample.pdf (and .png, with pdftoppm) from a simulated couple's history
	$(BIN)/python -m simulation.report_sample $(SAMPLE_ARGS)

clean:
	rm -rf var .pytest_cache
