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

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or Cargo.lock change.
# Stub sources stand in for the crate so that `cargo build` compiles the dependencies alone.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src/bin/kubectl-hitl benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in crdgen kubectl-hitl/main; do echo 'fn main() {}' > src/bin/$b.rs; done \
 && echo 'fn main() {}' > benches/latency.rs \
 && cargo fetch --locked \
 && cargo build --locked --release --bin hitl-operator \
 && rm -rf src benches target/release/.fingerprint/hitl-operator-*

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
