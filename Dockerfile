# shadowdiff as a container image (deploy/kubernetes runs `image: shadowdiff:latest`).
# Build: scripts/image.sh (docker, podman or buildah, whichever the machine has).
#
# Build stage: the Rust toolchain and what librdkafka's bundled build needs (rdkafka builds its
# own librdkafka with ./configure and make; zlib for lz4/gzip framing).
FROM docker.io/library/rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config python3 zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p shadowdiff-cli \
 && strip target/release/shadowdiff

# Runtime stage: the binary only, CA certificates for https targets, a non-root user.
FROM docker.io/library/debian:bookworm-slim
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
