# edgetier: `make run` starts the default system, `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

GO            ?= go
CADDY_VERSION := v2.11.9
XCADDY        := $(GO) run github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
STATICCHECK   := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
VIDEO_DIR     ?= $(CURDIR)/testdata
# xcaddy's `go get` of our module must read "not found" from the proxy so
# that go takes the local replacement; a proxy that answers 403 for a module
# it does not serve would stop the build, so such answers fall through to
# "off", which go reads as not found.
BUILD_GOPROXY := $(shell $(GO) env GOPROXY | sed -e 's/[,|]direct$$//' -e 's/,/|/g')|off
GO_SOURCES    := $(shell find . -name '*.go' -not -path './bench/out/*') go.mod go.sum $(shell find dashboard -type f 2>/dev/null)

# System packages the tests use: Chromium (browser tests), Prometheus and
# promtool, ffmpeg/ffprobe, the peer load balancers of the benchmarks, and
# a Docker engine with Compose and a static busybox (the deployment tests).
APT_PACKAGES := chromium prometheus ffmpeg wrk nginx-light haproxy docker-compose docker.io busybox-static
APT_COMMANDS := chromium prometheus promtool ffmpeg ffprobe wrk nginx haproxy docker-compose dockerd containerd busybox
COMPOSE_V2    := v2.29.7

.PHONY: all build run test compose-test images-offline compose-v2 soak lint bench breakcheck deps dashboard-vendor clean

all: build

build: bin/caddy bin/edgeagent

bin/caddy: $(GO_SOURCES)
	@mkdir -p bin
	GOPROXY='$(BUILD_GOPROXY)' $(XCADDY) build $(CADDY_VERSION) --output $@ --with github.com/edgetier/edgetier=./

bin/edgeagent: $(GO_SOURCES)
	@mkdir -p bin
	$(GO) build -o $@ ./cmd/edgeagent

run: build
	@VIDEO_DIR=$(VIDEO_DIR) ./scripts/run.sh

deps:
	@missing=""; for c in $(APT_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $(APT_PACKAGES)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Every test, against the binary built once above. Integration tests fail
# (never skip) when EDGETIER_CADDY is set; a skip anywhere fails the run.
# ./... includes deploy/deploytest: the Compose and Swarm tests on a Docker
# engine of their own (what compose-test runs alone) and the Kubernetes
# manifests' test.
test: deps build lint
	@mkdir -p build
	EDGETIER_CADDY=$(CURDIR)/bin/caddy EDGETIER_AGENT=$(CURDIR)/bin/edgeagent \
	  $(GO) test -p 1 -count=1 -timeout 20m -v ./... 2>&1 | tee build/test.log | grep -E '^(--- |ok|FAIL|panic)' || true
	@if grep -qE '^(--- FAIL|FAIL|panic)' build/test.log; then echo "FAIL: see build/test.log"; exit 1; fi
	@if grep -q -- '--- SKIP' build/test.log; then grep -- '--- SKIP' build/test.log; echo "FAIL: tests were skipped; a skipped test proves nothing"; exit 1; fi
	$(GO) test -race -count=1 -timeout 10m ./edgeagent/... ./caddymodule/... ./internal/board/... ./internal/rank/... -run 'Board|Hub|Meter|Agent|Select|Choose|Slow'
	@echo "$$(grep -cE -- '^\s*--- PASS' build/test.log) passed, $$(grep -cE -- '^\s*--- FAIL' build/test.log) failed"

# docker-compose.yml for real, as Compose and as a Swarm stack, on a Docker
# engine the tests start and stop themselves (build/docker/, never another
# daemon), with images built offline from bin/caddy; about 3 minutes.
compose-test: deps build
	EDGETIER_CADDY=$(CURDIR)/bin/caddy \
	  $(GO) test -count=1 -timeout 15m -v -run '^(TestCompose|TestSwarm|TestKubernetesManifests)$$' ./deploy/deploytest/

# The deployment's images without a registry, from bin/caddy, Debian's
# busybox-static and prometheus, into the engine DOCKER_HOST names.
images-offline: build
	bash deploy/offline/build.sh $(CURDIR)/bin/caddy

# Optional: the `docker compose` (v2) CLI plugin, built from its Go module
# (about 8 minutes), into build/cli-plugins/, where the Compose test finds it.
compose-v2: build/cli-plugins/docker-compose

build/cli-plugins/docker-compose:
	@mkdir -p build/cli-plugins
	GOBIN=$(CURDIR)/build/cli-plugins $(GO) install \
	  -ldflags '-X github.com/docker/compose/v2/internal.Version=$(COMPOSE_V2)' \
	  github.com/docker/compose/v2/cmd@$(COMPOSE_V2)
	mv build/cli-plugins/cmd $@

# Long, bounded tests that stop by themselves; not part of make test.
soak: deps build
	EDGETIER_CADDY=$(CURDIR)/bin/caddy EDGETIER_AGENT=$(CURDIR)/bin/edgeagent \
	  $(GO) test -tags soak -count=1 -timeout 15m -v -run Soak ./integration/

# Each reliability test against the deliberate break it must catch
# (breakcheck/breaks/); run on a commit where `make test` is green.
breakcheck: deps
	bash breakcheck/run.sh

bench: build
	@mkdir -p build
	$(GO) test -run '^$$' -bench BenchmarkSelect -benchmem -count 5 ./caddymodule/ | tee build/bench.txt
	EDGETIER_CADDY=$(CURDIR)/bin/caddy $(GO) test -run '^$$' -bench TransportOverhead -benchtime 1x ./integration/ | tee -a build/bench.txt
	EDGETIER_CADDY=$(CURDIR)/bin/caddy $(GO) test -run '^$$' -bench DashboardHub -benchtime 1x ./integration/ | tee -a build/bench.txt

# Reinstall the chart library from the lock file and copy it into the page.
dashboard-vendor:
	cd dashboard && npm ci --no-audit --no-fund
	cp dashboard/node_modules/chart.js/dist/chart.umd.min.js dashboard/static/vendor/chart.umd.min.js

clean:
	rm -rf bin build
