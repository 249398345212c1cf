# The operator image, for those with a container engine. `make image` builds the same image without
# one (hack/build-image: the same static binary at /hitl-operator on an empty base, user
# 65532:65532, no shell). Not built by the tests: the development machines have no container engine.
#
#   docker build -t ghcr.io/hitl-dev/hitl-operator:$(cargo pkgid | cut -d@ -f2) \
#     --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
#
# The builder is named by tag and digest: `hack/pin-base-image` resolves the tag's current digest
# (crane or docker buildx) and rewrites RUST_IMAGE below; the tag alone is kept until then, because
# the digest cannot be looked up from the development machines (no registry on their network).
# Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64 ...`.
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
FROM ${RUST_IMAGE} AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when a Cargo.toml or Cargo.lock change.
# Stub sources stand in for the workspace's crates so that `cargo build` compiles the dependencies
# alone; their fingerprints are removed, so that the real sources are compiled below.
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates/hitl-api/Cargo.toml crates/hitl-api/
COPY crates/hitl-engine/Cargo.toml crates/hitl-engine/
COPY crates/hitl-client/Cargo.toml crates/hitl-client/
RUN mkdir -p src/bin benches crates/hitl-api/src crates/hitl-engine/src crates/hitl-client/src/bin/kubectl-hitl \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > src/bin/crdgen.rs \
 && for b in latency scale; do echo 'fn main() {}' > benches/$b.rs; done \
 && touch crates/hitl-api/src/lib.rs crates/hitl-engine/src/lib.rs crates/hitl-client/src/lib.rs \
 && echo 'fn main() {}' > crates/hitl-client/src/bin/kubectl-hitl/main.rs \
 && cargo fetch --locked \
 && cargo build --locked --release -p hitl-operator --bin hitl-operator \
 && rm -rf src benches crates target/release/.fingerprint/hitl-*

COPY . .
# .dockerignore leaves .git out, so the commit `--version` prints comes in as an argument.
ARG GIT_COMMIT=unknown
RUN HITL_GIT_COMMIT=$GIT_COMMIT hack/build-image --binary-only

FROM scratch
ARG GIT_COMMIT=unknown
ARG VERSION=unknown
LABEL org.opencontainers.image.title=hitl-operator \
      org.opencontainers.image.description="Kubernetes operator for human-in-the-loop workflows" \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$GIT_COMMIT \
      org.opencontainers.image.source=https://github.com/hitl-dev/hitl-operator \
      org.opencontainers.image.licenses=Apache-2.0
COPY --from=build /src/target/image/release/hitl-operator /hitl-operator
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/hitl-operator"]
