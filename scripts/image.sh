#!/usr/bin/env bash
# Builds the shadowdiff image (Dockerfile) with whatever engine this machine has: docker (with
# a running daemon), podman, or buildah (daemonless, from Debian). Then runs `shadowdiff demo`
# inside it as a smoke test and prints the image size.
#
#   scripts/image.sh [TAG]        default tag: shadowdiff:latest
#
# The build pulls rust:1-bookworm and debian:bookworm-slim from Docker Hub: the machine needs
# access to it (or a mirror configured for the engine).
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-shadowdiff:latest}"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
elif command -v podman >/dev/null; then
    engine=podman
elif command -v buildah >/dev/null; then
    engine=buildah
else
    echo "No container engine: install one (apt-get install podman, or buildah)." >&2
    exit 2
fi
echo "[image] building $tag with $engine" >&2
case "$engine" in
    buildah) buildah bud --layers -t "$tag" . ;;
    *) "$engine" build -t "$tag" . ;;
esac
case "$engine" in
    buildah)
        echo "[image] buildah cannot run containers; run it with podman or docker." >&2
        buildah images "$tag"
        ;;
    *)
        "$engine" image ls "$tag"
        echo "[image] shadowdiff demo inside the image:" >&2
        "$engine" run --rm "$tag" demo --requests 200 | tail -20
        ;;
esac
