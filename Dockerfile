# The operator image. Not built by the tests (the development machines have no container engine).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin hitl-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/hitl-operator /hitl-operator
USER 65532:65532
ENTRYPOINT ["/hitl-operator"]
