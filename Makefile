# hitl-operator. `make demo` runs the operator's main job on the local cluster; `make test` runs
# every test. Both build what is missing (the Kubernetes binaries are cached outside the checkout).
SHELL := /bin/bash
CARGO ?= cargo
KUBECTL = $(shell hack/asset-path kubectl)
# Integration tests each run their own operator process; more threads only contend for 2 cores.
TEST_THREADS ?= 4

.PHONY: image all build crds lint fmt test test-unit test-integration cluster-up cluster-down cluster-status demo \
        install-crds demo bench bench-scale bench-fanout assets chart-sync chart-lint plugin-archive release

all: build

build:
	$(CARGO) build --workspace --bins

# Regenerate the CRD YAML from the Rust types (a unit test fails when crds/ is stale).
crds:
	$(CARGO) run --quiet --bin crdgen > crds/hitl.dev.yaml
	hack/chart-sync

# Copy crds/ and config/policy/ into the Helm chart and config/crd (tests/chart.rs fails when stale).
chart-sync:
	hack/chart-sync

chart-lint:
	hack/build-assets helm
	hack/chart-sync --check
	"$$(hack/asset-path helm)" lint --strict charts/hitl-operator

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) chart-lint

assets:
	hack/build-assets

cluster-up:
	hack/cluster up

# The decision archive's PostgreSQL (hack/postgres), which the archive's tests start, goes too.
cluster-down:
	hack/cluster down
	hack/postgres down

cluster-status:
	hack/cluster status

install-crds:
	$(KUBECTL) --kubeconfig "$$(hack/cluster kubeconfig admin)" apply --server-side --force-conflicts -f crds/
	$(KUBECTL) --kubeconfig "$$(hack/cluster kubeconfig admin)" wait --for=condition=Established --timeout=60s \
		crd/workflows.hitl.dev crd/approvals.hitl.dev

# The operator's main job on the local cluster: submit a workflow, show the pending approval,
# approve it as alice, and watch the run finish.
demo:
	hack/demo

test-unit:
	$(CARGO) test --workspace --lib --bins

# Needs a running local cluster (make cluster-up). The page tests need Chromium (hack/install-browser).
# The operator's image (from the debug build) goes to the real node first, for tests/in_cluster.rs.
# The plugin is hitl-client's binary, which `cargo test` does not build for the root package's tests:
# build every binary of the workspace first (tests/common's plugin_bin() refuses a missing or stale one).
test-integration:
	hack/install-browser
	$(CARGO) build --workspace --bins
	hack/build-image --profile dev
	$(CARGO) test --test '*' -- --test-threads=$(TEST_THREADS)

# The container image, built with no container engine: a static operator binary on an empty base,
# as an OCI image layout in target/image/hitl-operator-<version>.oci.tar (see hack/build-image).
image:
	hack/build-image

# The kubectl plugin's release archive and krew manifest, in target/release-archive/:
# kubectl-hitl-<version>-<os>-<arch>.tar.gz (the plugin, its completion script, LICENSE, README.md)
# and hitl.yaml (the krew Plugin, with the archive's sha256). See hack/plugin-archive.
# The binary is static (glibc's crt-static, as the image's; see hack/build-image) and stripped, so
# it runs on any Linux of its architecture, musl-based ones included.
plugin-archive:
	$(CARGO) rustc --locked --release -p hitl-client --bin kubectl-hitl -- -C target-feature=+crt-static -C strip=symbols
	hack/plugin-archive

# Release artifacts built here: the plugin archive and its krew manifest (the image: make image).
release: plugin-archive

# Latency and API-write figures on the running local cluster (make cluster-up); no assertions.
# Report on stdout and in target/bench/latency.json.
bench:
	$(CARGO) build --workspace --release --bins
	$(CARGO) bench --bench latency

# Throughput, API requests and memory under load (N one-Pod Workflows at once, against the bare-Pod
# limit of the same cluster); HITL_SCALE_N=5000 for the big run. Report on stdout and in
# target/bench/scale.json. Takes minutes; never part of make test.
bench-scale:
	$(CARGO) build --workspace --release --bins
	$(CARGO) bench --bench scale

# A forEach of 500 container items at parallelism 10 and 50 on the local cluster (make cluster-up):
# seconds, Workflow status writes (seen on a watch) and status size. About 1.5 minutes.
bench-fanout:
	$(CARGO) build --workspace --bins
	$(CARGO) test --test fanout -- --ignored --nocapture --test-threads=1 five_hundred_items_measured

# Unit tests, then the integration tests on a fresh local cluster, which is torn down even when
# tests fail.
test: test-unit
	hack/build-assets
	hack/cluster up
	status=0; $(MAKE) test-integration || status=$$?; hack/cluster down; hack/postgres down; exit $$status
