# The operator image for those with a container engine; `make image` builds the same image without
# one (hack/build-image): the operator linked statically, alone on an empty base, as user 65532.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ARG HITL_GIT_COMMIT=unknown
ENV HITL_GIT_COMMIT=$HITL_GIT_COMMIT
RUN cargo rustc --locked --release --bin hitl-operator -- -C target-feature=+crt-static -C strip=symbols

FROM scratch
COPY --from=build /src/target/release/hitl-operator /hitl-operator
USER 65532:65532
ENTRYPOINT ["/hitl-operator"]
