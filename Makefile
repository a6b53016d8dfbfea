# Build a static binary with its version stamped from git.
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test bench fuzz
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o auditlogin ./cmd/auditlogin

test:
	go test -race ./...

bench:
	go test -run XXX -bench . -benchmem ./parser ./...
	bench/throughput.sh

fuzz:
	go test -run XXX -fuzz FuzzAuditLoginUser -fuzztime 60s ./parser
