# Sluice: `make up` sets up and runs Sluice on the default policy (audit mode);
# `make test` sets up and runs the whole test suite. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := build
POLICY ?= /etc/sluice/policy.yaml

.PHONY: setup build test test-unit test-integration up down bench deb clean

setup:
	@scripts/setup.sh

build: setup

test: setup
	@node scripts/run-tests.mjs

test-unit: setup
	@node scripts/run-tests.mjs unit

test-integration: setup
	@node scripts/run-tests.mjs integration

up: setup
	@scripts/up.sh "$(POLICY)"

down:
	@scripts/down.sh

bench: setup
	@npm run --silent bench:datapath
	@npm run --silent bench:dns
	@npm run --silent bench:events

deb: setup
	@scripts/build-deb.sh

clean:
	rm -rf dist build node_modules
