# syntax=docker/dockerfile:1
# Switchyard container image: a Rust build stage and a small, shell-less runtime stage.
#
#   docker build -t switchyard .
#   docker run --rm -p 8080:8080 --read-only \
#     -e ANTHROPIC_API_KEY -e OPENROUTER_API_KEY -e SWITCHYARD_KEY -e SWITCHYARD_ADMIN_KEY \
#     switchyard
#
# Mount your own config over /etc/switchyard/switchyard.yaml (read-only). The README's
# "Operating Switchyard" section has the compose and Kubernetes examples.

# Both images are Debian 12 (bookworm): the binary links the glibc it was built against.
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
# Distroless "cc": glibc, libgcc, CA certificates, /etc/passwd with `nonroot` (65532), no
# shell and no package manager. Any glibc image works (e.g. debian:bookworm-slim).
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target caches speed up rebuilds; the binaries are copied out of the cached
# target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
 && mkdir -p /out \
 && strip --strip-debug -o /out/switchyard target/release/switchyard \
 && rustc --edition 2021 -C opt-level=s -C strip=symbols \
      -o /out/switchyard-healthcheck examples/healthcheck.rs

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/switchyard /out/switchyard-healthcheck /usr/local/bin/
COPY deploy/config/standalone.yaml /etc/switchyard/switchyard.yaml
ENV SWITCHYARD_CONFIG=/etc/switchyard/switchyard.yaml
# Numeric, so the runtime can check it is not root without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
# Exec form: the image has no shell. The probe is a std-only program (examples/healthcheck.rs)
# that GETs /healthz and exits 0 on a 200; it follows the config's port 8080.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/switchyard-healthcheck", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--config", "/etc/switchyard/switchyard.yaml"]
