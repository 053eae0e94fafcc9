# runpod-comfy: see README.md. Every target works offline on a fresh machine with Go 1.26,
# git and python3 (with venv and pip).
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO      ?= go
BIN     := bin/runpod-comfy
DEMO    ?= $(CURDIR)/.demo

.PHONY: all build test lint bench demo docker clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/runpod-comfy

# The test suite: unit, integration (real git, pip, HTTP on loopback) and CLI scripts.
test:
	$(GO) test -count=1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2; then \
		staticcheck ./... ; else echo "staticcheck unavailable; skipped"; fi

# Benchmarks: each capability beside the tool people use today, in the same run.
# Figures and the command are recorded in docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench/...

# The main job on an embedded default, offline: see scripts/demo.sh.
demo: build
	./scripts/demo.sh $(DEMO)

# The worker image, for linux/amd64 (RunPod's GPUs) whatever the build host; PYTHON_VERSION
# is 3.12 (default) or 3.11.
PYTHON_VERSION ?= 3.12
docker:
	docker build --platform linux/amd64 --build-arg PYTHON_VERSION=$(PYTHON_VERSION) -f docker/Dockerfile -t runpod-comfy:dev-py$(PYTHON_VERSION) .

clean:
	rm -rf bin .demo
