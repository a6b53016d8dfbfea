# Build a static binary with its version stamped from git.
VERSION := $(shell packaging/version 2>/dev/null || echo dev)
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
# GOFLAGS=-count=1: a cached coverage run makes gremlins time every mutant out.
mutate:
	go install github.com/go-gremlins/gremlins/cmd/gremlins@v0.5.0
	GOFLAGS=-count=1 $$(go env GOPATH)/bin/gremlins unleash --coverpkg github.com/auditlogin/auditlogin --workers 2 --timeout-coefficient 1 .
	GOFLAGS=-count=1 $$(go env GOPATH)/bin/gremlins unleash --workers 2 --timeout-coefficient 3 ./tailer
	GOFLAGS=-count=1 $$(go env GOPATH)/bin/gremlins unleash --workers 2 --timeout-coefficient 3 ./parser
