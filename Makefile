# cepjobs — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/cepcomunicacion/cepjobs/internal/version.Version=$(VERSION)
BINARIES := cepjobs intake worker-automation worker-llm worker-stats scheduler

.PHONY: run test lint build check-go clean bench bench-intake bench-backup bench-export bench-all fuzz chaos soak

## run: the whole fleet in one process (cepjobs dev), dashboard included
run: check-go
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/cepjobs dev

## test: every test, with the race detector, against real Redis and PostgreSQL
test: check-go
	@scripts/check-test-services.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-nginx.sh
	$(GO) test -race -count=1 -timeout 15m ./...

## lint: gofmt, go vet, staticcheck (pinned, fetched by go run)
lint: check-go
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## build: static binaries into bin/
build: check-go
	@mkdir -p bin
	for b in $(BINARIES); do CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/$$b ./cmd/$$b || exit 1; done

check-go:
	@command -v $(GO) >/dev/null || { echo "Go is not installed: get Go 1.26 or newer from https://go.dev/dl/"; exit 1; }
	@$(GO) version | awk '{split($$3,v,"."); sub("go","",v[1]); if (v[1] < 1 || (v[1] == 1 && v[2] < 26)) { print "Go 1.26 or newer is needed, found " $$3; exit 1 }}'

clean:
	rm -rf bin

## bench: queue benchmarks (ours = worker-automation at its defaults, vs bare asynq vs BullMQ) into
## bench/RESULTS.md; needs redis-server, node, npm; 10-20 min. Flags: BENCH_FLAGS=... (go run ./bench/queue -h)
bench: check-go
	$(GO) run ./bench/queue $(BENCH_FLAGS)

## bench-intake: POST /v1/leads on the real intake (wrk, 50 connections) vs pgbench single-row INSERT; prints the section for bench/RESULTS.md
bench-intake: check-go
	$(GO) run ./bench/intake -write=false

## bench-backup: backup:database of a 1 GiB database by the real worker-stats vs plain pg_dump (bench/backup/RESULTS.md)
bench-backup: check-go
	bench/backup/run.sh --rounds 3

## bench-export: export of 100,000 leads by the real worker-stats, peak RSS (bench/export/RESULTS.md)
bench-export: check-go
	$(GO) run ./bench/export

## bench-all: every benchmark above, one after the other
bench-all: bench bench-intake bench-backup bench-export

## fuzz: every Fuzz target (request decoding and validation) for FUZZTIME each, one at a time; failing inputs land in api/testdata/fuzz/
FUZZTIME ?= 60s
fuzz: check-go
	scripts/fuzz.sh $(FUZZTIME)

## chaos: fault injection at full length (worker SIGKILL, Redis and Postgres outages, vendor outage, rolling deploy), then the fuzzers; results in chaos/RESULTS.md
chaos: check-go
	CEPJOBS_CHAOS=full $(GO) test -count=1 -v -timeout 90m -skip '^TestSoak$$' ./chaos/
	@if [ -x scripts/fuzz.sh ]; then scripts/fuzz.sh 60s; fi

## soak: ten minutes at 300 leads/s through the whole fleet; RSS and goroutines of every binary sampled every 10 s
soak: check-go
	CEPJOBS_CHAOS=soak $(GO) test -count=1 -v -timeout 60m -run TestSoak ./chaos/
