# SAGE — Kubernetes-native serving and fine-tuning of LLMs.
# `make help` lists the targets. The two a newcomer needs: `make run` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# The source folders (pyproject.toml lists them once): the working tree's packages win over an install.
export PYTHONPATH := $(shell python3 -c "import tomllib; print(\":\".join(\"$(CURDIR)/\" + d for d in tomllib.load(open(\"$(CURDIR)/pyproject.toml\", \"rb\"))[\"tool\"][\"setuptools\"][\"packages\"][\"find\"][\"where\"]))")
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
PYTEST_ARGS ?=

timed = start=$$SECONDS; $(1); echo "==> phase $(2) took $$((SECONDS - start))s"

.PHONY: help
help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: env
env: ## Create the Python environment (once per machine; PyTorch is large) and install SAGE editable
	@$(call timed,venv=$$(.ci/python-env.sh) && ln -sfn "$$venv" $(VENV),env)

.PHONY: vllm-env-background
vllm-env-background: ## Start making the vLLM environment (the vLLM parser test's; once per machine, about 9 GB of downloads) in the background: the downloads overlap the Go builds, and the test waits for them (the script holds a lock)
	@log="$${XDG_CACHE_HOME:-$$HOME/.cache}/sage/vllm-env.log"; mkdir -p "$$(dirname "$$log")"; \
	  (e2e/vllm/vllm-env.sh >/dev/null 2>"$$log" &); \
	  echo "==> vLLM environment: made ready in the background when missing (log: $$log)"

.PHONY: binaries
binaries: ## Build kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, helm, kube-score from Go modules (cached)
	@$(call timed,e2e/envtest/build-binaries.sh >/dev/null,binaries)

.PHONY: crds
crds: env-ready ## Regenerate crds/ and charts/sage/crds/ from the pydantic models
	@$(PY) -m sage_api.write_crds crds $$( [ -d charts/sage ] && echo charts/sage/crds )

.PHONY: lint
lint: env-ready binaries ## ruff (lint + format check), mypy --strict, import-linter contracts, CRDs current, kube-score
	@$(call timed,$(MAKE) --no-print-directory lint-steps,lint)

.PHONY: lint-steps
lint-steps:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $$(for d in lib operator gateway cli client images e2e; do [ -n "$$(find $$d -name '*.py' -print -quit 2>/dev/null)" ] && echo $$d; done)
	$(VENV)/bin/lint-imports
	$(PY) -m sage_api.write_crds --check crds $$( [ -d charts/sage ] && echo charts/sage/crds )
	$(PY) -m sage_harness.kube_score

.PHONY: fmt
fmt: env-ready ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test
test: ## Everything CI runs: environment, node packages, binaries, lint, images, then every test tier (node included)
	@$(MAKE) --no-print-directory vllm-env-background
	@$(MAKE) --no-print-directory env
	@$(call timed,e2e/node/install-prerequisites.sh,node-prereqs)
	@$(MAKE) --no-print-directory binaries
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory images
	@$(call timed,$(PY) -m pytest -ra --durations=15 $(PYTEST_ARGS),tests)

.PHONY: unit
unit: env-ready ## Only the fast unit tests (no API server, no engine processes)
	$(PY) -m pytest -m "not integration and not engine and not slow" $(PYTEST_ARGS)

.PHONY: run
# The chat model is downloaded on first use where the hub answers (offline, its engine says so in
# one line); tests keep HF_HUB_OFFLINE=1. An HF_HUB_OFFLINE set in the environment wins.
run: export HF_HUB_OFFLINE := $(if $(filter environment command,$(firstword $(origin HF_HUB_OFFLINE))),$(HF_HUB_OFFLINE),0)
run: ## Run SAGE locally: `sage up examples/local/` (MiniLM embeddings + a chat model) behind the gateway
	@$(MAKE) --no-print-directory env
	$(PY) -m sage_cli up examples/local/ $(RUN_ARGS)

.PHONY: soak
soak: env-ready ## Ten minutes of mixed load through the gateway with replica kills; writes docs/perf/soak.md (SOAK_SECONDS=600)
	$(PY) -m sage_harness.soak --seconds $(or $(SOAK_SECONDS),600) --out docs/perf

.PHONY: devcluster
devcluster: ## A local kube-apiserver + etcd + controller-manager with the CRDs applied, and a real node (kubelet + containerd)
	@$(MAKE) --no-print-directory env
	@$(MAKE) --no-print-directory binaries
	$(PY) -m sage_harness.devcluster

.PHONY: env-ready
env-ready:
	@[ -x $(PY) ] || $(MAKE) --no-print-directory env

.PHONY: clean
clean: ## Remove build and test leftovers (the shared caches stay)
	rm -rf .mypy_cache .ruff_cache .pytest_cache build *.egg-info $(VENV)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: print-pythonpath
print-pythonpath:
	@echo $(PYTHONPATH)

.PHONY: e2e-kind
e2e-kind: ## kind cluster e2e: build + load images, helm install, call the gateway (needs Docker; else says so)
	@$(call timed,e2e/kind/run.sh,e2e-kind)

.PHONY: images
images: ## Build every image under images/ as sage/<name>:<version> (Docker; else buildah on a local base; else says so)
	@$(call timed,images/build.sh,images)

.PHONY: node-prereqs
node-prereqs: ## Install the node tier's Debian packages (containerd, runc, CNI plugins, buildah, debootstrap, iptables, registry)
	@e2e/node/install-prerequisites.sh

.PHONY: node-test
node-test: env-ready ## Only the node tier: a real kubelet + containerd running the images built here (root; e2e/node/README.md)
	@$(MAKE) --no-print-directory binaries
	@$(call timed,$(PY) -m pytest -ra -m node $(PYTEST_ARGS),node-test)

.PHONY: bench-operator
bench-operator: env-ready ## Create 200 LLMEngines at once on a real API server; write docs/perf/operator.md
	@$(MAKE) --no-print-directory binaries
	@$(call timed,$(PY) e2e/bench/operator_bench.py,bench-operator)

.PHONY: bench-discovery
bench-discovery: env-ready ## Real API server (root): 1,000 engines; endpoint ready -> routable by every gateway; docs/perf/discovery.md
	@$(MAKE) --no-print-directory binaries
	@$(call timed,$(PY) e2e/bench/discovery_bench.py $(or $(BENCH_ARGS),--engines 1000 --gateways 2 --rounds 20),bench-discovery)

.PHONY: bench-autoscale
bench-autoscale: env-ready ## Real node (root): cold starts from zero and a load step 0 -> N -> 0; docs/perf/autoscaling.md
	@$(MAKE) --no-print-directory binaries
	@$(call timed,$(PY) e2e/bench/autoscale_bench.py $(BENCH_ARGS),bench-autoscale)

.PHONY: bench-engine
bench-engine: env-ready ## Engine embeddings, torch and onnx, vs in-process limits and infinity-emb (BENCH_ARGS=--install-peers) -> docs/perf/engine.md
	@$(call timed,$(PY) images/engine/bench/engine_bench.py $(BENCH_ARGS),bench-engine)

.PHONY: bench-gateway
bench-gateway: env-ready ## Gateway beside direct, nginx, vllm-router, LiteLLM (pinned, interleaved), then 1 worker on 1 CPU vs 2 on 2 (BENCH_ARGS=--install-peers, --profile: py-spy flame graphs, --no-scaling); docs/perf/gateway.md
	@$(call timed,$(PY) gateway/bench/bench_gateway.py $(BENCH_ARGS),bench-gateway)

.PHONY: bench-gateway-stages
bench-gateway-stages: env-ready ## One client's request through the gateway stage by stage, beside direct and plain p50s; docs/perf/gateway-stages.md
	@$(call timed,$(PY) gateway/bench/bench_gateway_stages.py $(BENCH_ARGS),bench-gateway-stages)

.PHONY: bench-finetune
bench-finetune: env-ready ## Fine-tune steps/s with and without per-step progress, LoRA vs full, interleaved; docs/perf/finetune.md
	@$(call timed,$(PY) images/finetune/bench/finetune_bench.py $(BENCH_ARGS),bench-finetune)
