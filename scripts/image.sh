#!/usr/bin/env bash
# Builds the shadowdiff image (Dockerfile) with whatever engine this machine has: docker (with
# a running daemon), podman, or buildah (daemonless, from Debian). Then runs `shadowdiff demo`
# inside it as a smoke test, checks that it runs as uid 10001, and prints the image size.
#
#   scripts/image.sh [--local-base | --registry-base] [--ca-cert FILE]... [TAG]
#                                 default tag: shadowdiff:latest
#
# Bases: by default the build pulls rust:1-bookworm and debian:bookworm-slim from Docker Hub
# (or the mirror configured for the engine).
#   --local-base     build on a Debian bookworm made here instead: `debootstrap --variant=minbase`
#                    from $DEBIAN_MIRROR (default http://deb.debian.org/debian), imported into the
#                    engine as localhost/shadowdiff-bookworm:base and reused by later builds
#                    (remove that image to make it again). Needs root and debootstrap (installed
#                    with apt-get if missing). The build stage then installs the toolchain with
#                    rustup from static.rust-lang.org; the build still needs the Debian mirror,
#                    static.rust-lang.org and crates.io, no registry.
#   (neither)        as --registry-base when Docker Hub answers or both bases are already in the
#                    engine's store; otherwise the script says so and takes --local-base.
#   --registry-base  the Docker Hub bases even if Docker Hub does not answer here (a mirror).
#   --ca-cert FILE   a PEM certificate the build stage trusts as well, for a network whose
#                    egress re-signs TLS (rustup and crates.io are fetched over https); the
#                    image itself does not get it. Repeatable.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

base_mode=auto
ca_certs=""
tag=""
while [ $# -gt 0 ]; do
    case "$1" in
        --local-base) base_mode=local ;;
        --registry-base) base_mode=registry ;;
        --ca-cert)
            [ $# -ge 2 ] || { echo "--ca-cert needs a file" >&2; exit 2; }
            grep -q -- '-----BEGIN CERTIFICATE-----' "$2" 2>/dev/null \
                || { echo "--ca-cert $2: not a readable PEM certificate" >&2; exit 2; }
            ca_certs+="$(cat "$2")"$'\n'
            shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [ -z "$tag" ] || { echo "one TAG only (see --help)" >&2; exit 2; }
           tag="$1" ;;
    esac
    shift
done
tag="${tag:-shadowdiff:latest}"
registry_build_base=docker.io/library/rust:1-bookworm
registry_runtime_base=docker.io/library/debian:bookworm-slim
local_base=localhost/shadowdiff-bookworm:base
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

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

# Flags podman and buildah need where their defaults cannot work (none on a usual machine):
# - crun refuses cgroups v1 when the v2 hierarchy beside it has controllers of its own ("cgroups
#   in hybrid mode not supported"); runc accepts it.
# - without CAP_SYS_RESOURCE (a sandboxed root) the container cannot get podman's default
#   RLIMIT_NOFILE and RLIMIT_NPROC (about a million), so ask for what this process has; nproc at
#   most 32768, the limit podman 4.3 sets on itself.
engine_flags=()
if [ "$engine" != docker ]; then
    if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
        if command -v runc >/dev/null; then
            engine_flags+=(--runtime runc)
        else
            echo "[image] cgroups v1 with controllers in the v2 hierarchy too: crun cannot run" \
                 "containers here, runc can (apt-get install runc)." >&2
            exit 2
        fi
    fi
    cap_eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
    if ! (( (16#${cap_eff:-0} >> 24) & 1 )); then
        nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
        [ "$nofile" = unlimited ] && nofile=1048576
        if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
        engine_flags+=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
    fi
fi
# Runs the engine's command $1 with engine_flags. `podman build` and `buildah bud` take
# --runtime (for RUN) as their own option, `podman run` only as a global one.
engine_cmd() {
    local cmd=$1; shift
    case "$engine" in
        docker) docker "$cmd" "$@" ;;
        podman)
            local global=() local_flags=() i
            for ((i = 0; i < ${#engine_flags[@]}; i += 2)); do
                if [ "$cmd" != build ] && [ "${engine_flags[i]}" = --runtime ]; then
                    global+=("${engine_flags[@]:i:2}")
                else
                    local_flags+=("${engine_flags[@]:i:2}")
                fi
            done
            podman "${global[@]}" "$cmd" "${local_flags[@]}" "$@" ;;
        buildah) buildah "$cmd" "${engine_flags[@]}" "$@" ;;
    esac
}

image_exists() {
    case "$engine" in
        docker) docker image inspect "$1" >/dev/null 2>&1 ;;
        podman) podman image exists "$1" ;;
        buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
    esac
}

if [ "$base_mode" = auto ]; then
    if image_exists "$registry_build_base" && image_exists "$registry_runtime_base"; then
        base_mode=registry
    elif ! command -v curl >/dev/null; then
        base_mode=registry
    elif [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
               https://registry-1.docker.io/v2/ || true)" =~ ^(200|401)$ ]]; then
        base_mode=registry  # its API answers 401 (a token is needed) to everyone
    else
        echo "[image] Docker Hub does not answer here: building on a local Debian base" \
             "(--local-base; --registry-base to use Docker Hub's anyway)." >&2
        base_mode=local
    fi
fi

# Makes $local_base unless the engine has it: a minbase bookworm, slimmed the way Debian's
# -slim images are (no docs but copyrights, no man pages or locales, no apt lists or caches),
# with the updates and security suites in its apt sources.
make_local_base() {
    if image_exists "$local_base"; then
        echo "[image] reusing $local_base" >&2
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "[image] --local-base runs debootstrap, which needs root." >&2
        exit 2
    fi
    if ! command -v debootstrap >/dev/null; then
        if command -v apt-get >/dev/null; then
            echo "[image] installing debootstrap (apt-get install debootstrap)" >&2
            apt-get install -y debootstrap >&2 \
                || { apt-get update >&2 && apt-get install -y debootstrap >&2; }
        else
            echo "[image] --local-base needs debootstrap (apt-get install debootstrap)." >&2
            exit 2
        fi
    fi
    local dir
    dir=$(mktemp -d /tmp/shadowdiff-base.XXXXXX)
    # shellcheck disable=SC2064 # $dir is expanded now, on purpose
    trap "rm -rf '$dir'" EXIT
    echo "[image] debootstrap --variant=minbase bookworm from $mirror" >&2
    debootstrap --variant=minbase bookworm "$dir/root" "$mirror" >&2
    (
        cd "$dir/root"
        rm -f etc/apt/sources.list etc/hostname
        cat > etc/apt/sources.list.d/debian.sources <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        cat > etc/dpkg/dpkg.cfg.d/slim <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
        # apt keeps no package caches or translations in an image layer (as in Debian's images)
        cat > etc/apt/apt.conf.d/docker-clean <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
EOF
        find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
        find usr/share/doc -mindepth 1 -type d -empty -delete
        rm -rf usr/share/groff/* usr/share/info/* usr/share/linda/* \
               usr/share/lintian/overrides/* usr/share/locale/* usr/share/man/*
        rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb
        find var/log -type f -delete
        : > etc/resolv.conf
    )
    tar -C "$dir/root" --numeric-owner -cf "$dir/root.tar" .
    local path_env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    echo "[image] importing it as $local_base" >&2
    case "$engine" in
        docker|podman)
            "$engine" import --change "ENV $path_env" --change 'CMD ["bash"]' \
                "$dir/root.tar" "$local_base" >/dev/null ;;
        buildah)
            local ctr
            ctr=$(buildah from scratch)
            buildah add "$ctr" "$dir/root.tar" / >/dev/null
            buildah config --env "$path_env" --cmd bash "$ctr"
            buildah commit "$ctr" "$local_base" >/dev/null
            buildah rm "$ctr" >/dev/null ;;
    esac
    rm -rf "$dir"
    trap - EXIT
}

build_args=()
if [ "$base_mode" = local ]; then
    make_local_base
    build_args+=(--build-arg "BUILD_BASE=$local_base" --build-arg "RUNTIME_BASE=$local_base")
fi
[ -z "$ca_certs" ] || build_args+=(--build-arg "EXTRA_CA_CERTS=$ca_certs")

# The build stage needs the network (apt, rustup, crates.io): the engine's default network for
# a build (a bridge with NAT for podman and buildah, docker's bridge) gives it, so no --network
# host; with --local-base nothing in the build has to come from a registry.
echo "[image] building $tag with $engine ($base_mode bases)" >&2
started=$SECONDS
case "$engine" in
    buildah) engine_cmd bud --layers -t "$tag" "${build_args[@]}" . ;;
    *) engine_cmd build -t "$tag" "${build_args[@]}" . ;;
esac
echo "[image] built in $((SECONDS - started)) s" >&2
case "$engine" in
    buildah)
        echo "[image] buildah cannot run containers; run it with podman or docker." >&2
        buildah images "$tag"
        ;;
    *)
        "$engine" image ls "$tag"
        uid=$(engine_cmd run --rm --entrypoint id "$tag" -u)
        echo "[image] runs as uid $uid" >&2
        [ "$uid" = 10001 ] || { echo "[image] expected uid 10001" >&2; exit 1; }
        echo "[image] shadowdiff demo inside the image:" >&2
        engine_cmd run --rm "$tag" demo --requests 200 | tail -20
        ;;
esac
