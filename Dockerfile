# Images for the ringcache node and operator, from one build:
#   docker build --target node     -t ghcr.io/ringcache/ringcache-node:0.1.0 .
#   docker build --target operator -t ghcr.io/ringcache/ringcache-operator:0.1.0 .
# Both are Rust binaries (rustls, no OpenSSL) on distroless/cc, running as non-root (uid 65532).
# The operator's default node image is ghcr.io/ringcache/ringcache-node:<its crate version>, so tag
# the two images with the same version (the chart's appVersion).

ARG RUST_VERSION=1.95
ARG VERSION=0.1.0

# --- dependency layer: cargo-chef builds only the dependencies from a recipe of the manifests,
# so source edits do not rebuild them.
FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      -p ringcache-node -p ringcache-operator
COPY . .
RUN cargo build --release --locked -p ringcache-node -p ringcache-operator \
 && mkdir -p /out \
 && cp target/release/ringcache-node target/release/ringcache-operator /out/

# --- runtime images: glibc + libgcc + CA certificates, no shell, uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime-base
ARG VERSION
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/ringcache" \
      org.opencontainers.image.vendor="ringcache"
USER 65532:65532

FROM runtime-base AS operator
LABEL org.opencontainers.image.title="ringcache-operator" \
      org.opencontainers.image.description="Kubernetes operator for ringcache CacheClusters"
COPY --from=build /out/ringcache-operator /usr/local/bin/ringcache-operator
# /metrics, /healthz, /readyz
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ringcache-operator"]

# Last stage = the default target.
FROM runtime-base AS node
LABEL org.opencontainers.image.title="ringcache-node" \
      org.opencontainers.image.description="ringcache cache node: in-memory partitions over HTTP"
COPY --from=build /out/ringcache-node /usr/local/bin/ringcache-node
# Public and internal HTTP API, /metrics, probes.
EXPOSE 7070
ENV RINGCACHE_LISTEN=0.0.0.0:7070
ENTRYPOINT ["/usr/local/bin/ringcache-node"]
