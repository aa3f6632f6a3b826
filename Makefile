# csvflow — the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help demo test test-browser bench-large tools localstack-up localstack-down deploy lint build lambda bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

demo: ## install what is missing, start LocalStack, deploy, run the local runner, drop sample CSVs, print windows
	scripts/demo

test: ## every test: lint, template checks, unit tests, LocalStack integration tests, demo, dashboard in Chromium, Lambda builds
	scripts/test

tools: ## install cargo-lambda, aws cli, sam cli and cfn-lint into .tools/
	scripts/tools

localstack-up: ## start LocalStack (Docker if available, else host mode)
	localstack/up

localstack-down: ## stop what localstack-up started
	localstack/down

deploy: ## deploy infra/template.yaml into LocalStack (functions off)
	localstack/deploy

lint: ## cargo fmt --check and clippy -D warnings
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

lambda: tools ## build the Lambda bootstrap zips for arm64 (ingest, dashboard)
	source localstack/env && cargo lambda build --release --arm64 --output-format zip -p ingest -p dashboard
	ls -l target/lambda/ingest/bootstrap.zip target/lambda/dashboard/bootstrap.zip

bench: ## throughput and memory benchmark of the engine against DuckDB and CPython
	scripts/bench

clean: ## stop LocalStack and remove build output and installed tools
	-localstack/down
	rm -rf target .tools .localstack

test-browser: ## headless Chromium test of the dashboard against LocalStack; refreshes docs/dashboard.png
	tests/browser/run

bench-large: ## peak RSS of ingest on a 10 MB vs a 1 GB object from S3 (LocalStack)
	scripts/bench-large
