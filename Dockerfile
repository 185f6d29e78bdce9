# shadowdiff as a container image (deploy/kubernetes runs `image: shadowdiff:latest`).
# Build: scripts/image.sh (docker, podman or buildah, whichever the machine has).
#
# The two bases are arguments. By default they are the official images from Docker Hub; on a
# machine that reaches no registry, `scripts/image.sh --local-base` passes a Debian bookworm it
# made with debootstrap for both. The build stage works on either: the rust image has cargo, a
# plain Debian gets the toolchain with rustup from static.rust-lang.org.
ARG BUILD_BASE=docker.io/library/rust:1-bookworm
ARG RUNTIME_BASE=docker.io/library/debian:bookworm-slim

# Build stage: the Rust toolchain and what librdkafka's bundled build needs (rdkafka builds its
# own librdkafka with ./configure and make; zlib for lz4/gzip framing).
FROM ${BUILD_BASE} AS build
ARG DEBIAN_FRONTEND=noninteractive
# PEM certificates this stage trusts besides Debian's (scripts/image.sh --ca-cert FILE), for a
# network whose egress re-signs TLS: rustup and crates.io are fetched over https. Only this
# stage gets them, not the image.
ARG EXTRA_CA_CERTS=
# The toolchain rustup installs when the base has no cargo. The workspace has no
# rust-toolchain.toml: it builds on stable (rust-version = 1.80 is the oldest it accepts).
ARG RUST_TOOLCHAIN=stable
# Where the rust image keeps the toolchain, so that rustup installs there too on a plain base.
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        mkdir -p /usr/local/share/ca-certificates \
     && printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt; \
    fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential pkg-config python3 zlib1g-dev curl ca-certificates \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && if ! command -v cargo >/dev/null; then \
        curl --proto '=https' --tlsv1.2 -sSf https://static.rust-lang.org/rustup/rustup-init.sh \
          | sh -s -- -y --no-modify-path --profile minimal --default-toolchain "$RUST_TOOLCHAIN"; \
    fi \
 && cargo --version
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p shadowdiff-cli \
 && strip target/release/shadowdiff

# Runtime stage: the binary only, CA certificates for https targets, a non-root user.
FROM ${RUNTIME_BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin shadowdiff
COPY --from=build /src/target/release/shadowdiff /usr/local/bin/shadowdiff
USER 10001:10001
WORKDIR /tmp
# The tap, the admin port and serve's port; which are used depends on the command.
EXPOSE 8080 9464 9400
ENTRYPOINT ["/usr/local/bin/shadowdiff"]
CMD ["demo", "--requests", "200"]
