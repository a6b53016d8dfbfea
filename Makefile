# Build a static binary with its version stamped from git.
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test bench fuzz mutate
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o auditlogin ./cmd/auditlogin

test:
	go test -race ./...

bench:
	go test -run XXX -bench . -benchmem ./parser ./...
	bench/throughput.sh

fuzz:
	go test -run XXX -fuzz FuzzAuditLoginUser -fuzztime 60s ./parser

# Mutation testing of the core (pipeline and tracker, tailer, parsers) with
# gremlins: each mutant of the code is run against the package's tests.
# Slow (tens of minutes on 2 cores), so not in CI; the score is in the README.
mutate:
	go install github.com/go-gremlins/gremlins/cmd/gremlins@v0.5.0
	cd . && $$(go env GOPATH)/bin/gremlins unleash --workers 2 --timeout-coefficient 4 .
	cd tailer && $$(go env GOPATH)/bin/gremlins unleash --workers 2 --timeout-coefficient 4 .
	cd parser && $$(go env GOPATH)/bin/gremlins unleash --workers 2 --timeout-coefficient 4 .
