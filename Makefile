# gitgate: the two commands a new user needs are `make run` and `make test`.

SHELL       := bash
.SHELLFLAGS := -eo pipefail -c

GO       ?= go
BIN      ?= bin/gitgate
DATA     ?= ./data
PKGS     := ./...
FUZZTIME ?= 20s
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# urfave_cli_no_docs drops the man/markdown generators: less start-up work
# for the pre-receive hook, which runs on every push.
BUILDFLAGS := -trimpath -tags urfave_cli_no_docs -ldflags "-s -w -X main.version=$(VERSION)"

.PHONY: all build run test lint bench bench-lfs fuzz clean

all: build

## build: compile bin/gitgate
build:
	$(GO) build $(BUILDFLAGS) -o $(BIN) ./cmd/gitgate

## run: start a gate on embedded defaults (data in ./data, HTTP on 127.0.0.1:8080, SSH on 127.0.0.1:2222)
run: build
	$(BIN) --data-dir $(DATA) repo create example --readme --if-missing
	$(BIN) --data-dir $(DATA) access grant example --anonymous --level read
	$(BIN) --data-dir $(DATA) serve

## test: lint, then every test (unit, fuzz seeds, end to end with real git) under the race detector
test: lint
	$(GO) test -race -count=1 $(PKGS)

## lint: gofmt and go vet
lint:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

## bench: clone via the gate vs. git alone, git-http-backend (CGI, nginx) and OpenSSH + git-shell;
## hook run time; Geo propagation; Geo replication (push-to-visible p50/p99 over 200 pushes
## with 2 secondaries, initial sync of 300 MB vs git clone --mirror). Each benchmark runs BENCHCOUNT times; benchstat
## then prints every figure with its spread. Raw results stay in bench/out/.
BENCHCOUNT ?= 10
## 1, 8 and 32 concurrent clones of two generated repositories of about 128 MiB (source-like,
## incompressible), per server: CONCCOUNT batches each; then the SSH costs against OpenSSH and
## the server CPU of a cold full clone with and without the pack-objects cache.
CONCCOUNT ?= 3
bench:
	bash bench/setup.sh
	mkdir -p bench/out
	$(GO) test -run '^$$' -bench '^BenchmarkClone$$' -benchtime 10x -count $(BENCHCOUNT) -timeout 60m ./bench/ | tee bench/out/clone.txt
	$(GO) test -run '^$$' -bench '^BenchmarkConcurrentClones$$' -benchtime 1x -count $(CONCCOUNT) -timeout 90m ./bench/ | tee bench/out/concurrent.txt
	$(GO) test -run '^$$' -bench '^BenchmarkSSHCosts$$' -benchtime 2x -count $(CONCCOUNT) -timeout 30m ./bench/ | tee bench/out/ssh.txt
	$(GO) test -run '^$$' -bench '^BenchmarkColdClone$$' -benchtime 4x -count $(CONCCOUNT) -timeout 30m ./bench/ | tee bench/out/cold.txt
	$(GO) test -run '^$$' -bench . -benchtime 3x -count $(BENCHCOUNT) -timeout 20m ./hooks/ ./geo/ | tee bench/out/hooks-geo.txt
	$(GO) test -run '^$$' -bench SiteToggle -benchtime 200x -count 1 -timeout 20m ./bench/site/ | tee bench/out/site.txt
	$(GO) test -run '^$$' -bench Hook -benchtime 50x -count $(BENCHCOUNT) -timeout 20m ./bench/site/ | tee -a bench/out/site.txt
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 3 -timeout 40m ./geoe2e/ | tee bench/out/geo-replication.txt
	$(GO) tool benchstat bench/out/clone.txt
	$(GO) tool benchstat bench/out/concurrent.txt
	$(GO) tool benchstat bench/out/ssh.txt
	$(GO) tool benchstat bench/out/cold.txt
	$(GO) tool benchstat bench/out/hooks-geo.txt
	$(GO) tool benchstat bench/out/site.txt

## bench-lfs: move one 1 GiB Git LFS object up and down through a gate; fails if the gate's peak RSS passes 64 MiB
bench-lfs:
	GITGATE_BENCH_LFS=1 $(GO) test -run '^$$' -bench LFSRoundTrip -benchtime 1x -timeout 20m ./bench/

## fuzz: run each fuzz target for FUZZTIME (their seed corpora also run in make test)
FUZZ_TARGETS := ./gitgate/:FuzzCleanName ./gitgate/:FuzzParseProtocol ./sshd/:FuzzParseCommand \
	./sshd/:FuzzParseLFSCommand ./access/:FuzzParseFile ./access/:FuzzParseCredentials ./access/:FuzzClientAddr ./geo/:FuzzPumpPush ./gitgate/:FuzzRefusalChannelFor
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name in $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

clean:
	rm -rf bin
