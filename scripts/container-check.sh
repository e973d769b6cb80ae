#!/usr/bin/env bash
# Builds the container image from the repository's Dockerfile with a private Docker daemon and
# checks that it runs (docs/deploy/README.md, "Container"):
#
#   scripts/container-check.sh                      # the whole Dockerfile: the release build runs
#                                                   # inside the build stage (~20 min on 2 busy cores)
#   scripts/container-check.sh --prebuilt BINARY    # the runtime stage only, with a binary built
#                                                   # on this host (cargo build --release): ~3 min
#   scripts/container-check.sh --keep               # keep the work directory (daemon data, base
#                                                   # images) and reuse it next time
#
# No image registry is contacted. The two base images the Dockerfile names are made locally and
# tagged with those names: `debian:bookworm-slim` from `debootstrap --variant=minbase bookworm`
# (documentation and locales removed, as in the official slim image), and `rust:1-bookworm` from
# that plus Debian's C toolchain and this host's Rust toolchain (`rustc --print sysroot`) and CA
# bundle. The only network traffic is to the Debian archive (debootstrap, apt-get) and, for the
# build stage, to crates.io; the containers run with `--network none` and are probed from the
# host inside their own network namespace (nsenter), over its loopback only.
#
# What is checked: the image builds; its size; `config check` and the operator commands
# (`cap-key new`, `keygen`) run in it as uid 10001; two containers (one network namespace, ports
# 9415 and 9416) started read-only with every capability dropped answer `/healthz` 200, log JSON,
# run as uid/gid 10001 with no capabilities, connect to each other and turn `/readyz` 200, pass a
# broadcast from one to the other, serve `/metrics`; `docker stop` (SIGTERM) drains each with
# exit status 0.
#
# Needs Linux, root, the Debian packages docker.io and debootstrap (installed with apt-get when
# missing), curl and nsenter; otherwise it prints `SKIPPED: …` and exits 0. Idempotent: a daemon
# left by an interrupted run is stopped first, and the work directory
# (CONTAINER_CHECK_DIR, default /var/tmp/svc-overlay-container-check) is removed at the end
# unless --keep. Peak disk use: about 2 GB for the whole build, 0.2 GB with --prebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

prebuilt=""
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prebuilt) prebuilt=$(realpath "${2:?--prebuilt needs a path}"); shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "container-check: unknown argument '$1' (--prebuilt BINARY, --keep)" >&2; exit 2 ;;
    esac
done

work=${CONTAINER_CHECK_DIR:-/var/tmp/svc-overlay-container-check}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=svc-overlay:check
names=(svc-overlay-check-b svc-overlay-check-a)
start_time=$SECONDS

say() { echo "container-check: $*"; }
skip() { echo "SKIPPED: container check: $*"; exit 0; }
fail() { echo "container-check: FAILED: $*" >&2; exit 1; }

[[ "$(uname -s)" == Linux ]] || skip "needs Linux"
[[ "$(id -u)" == 0 ]] || skip "needs root (it runs a private Docker daemon)"
[[ -z "$prebuilt" || -x "$prebuilt" ]] || fail "--prebuilt $prebuilt is not an executable file"

missing=()
command -v dockerd > /dev/null || missing+=(docker.io)
command -v debootstrap > /dev/null || missing+=(debootstrap)
command -v curl > /dev/null || missing+=(curl)
command -v nsenter > /dev/null || missing+=(util-linux)
if [[ ${#missing[@]} -gt 0 ]]; then
    command -v apt-get > /dev/null || skip "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        > /dev/null 2>&1 || skip "apt-get install ${missing[*]} failed"
fi
# The client of the docker.io package matches its daemon; another client on PATH may not.
docker_bin=$(command -v /usr/bin/docker || command -v docker) || skip "no docker client"
export DOCKER_HOST="unix://$work/docker.sock"
# The classic builder: BuildKit would fetch its Dockerfile frontend from a registry.
export DOCKER_BUILDKIT=0
docker() { "$docker_bin" "$@"; }

daemon_up() { docker version > /dev/null 2>&1; }

stop_daemon() {
    if daemon_up; then
        docker rm -f "${names[@]}" > /dev/null 2>&1 || true
    fi
    local pid
    pid=$(cat "$work/dockerd.pid" 2> /dev/null) || return 0
    if kill -0 "$pid" 2> /dev/null && grep -q dockerd "/proc/$pid/cmdline" 2> /dev/null; then
        kill "$pid"
        for _ in $(seq 60); do kill -0 "$pid" 2> /dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2> /dev/null && kill -9 "$pid"
    fi
    rm -f "$work/dockerd.pid"
}

unmount_work() { # mounts the daemon left under the work directory (after a kill -9)
    awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" 2> /dev/null || true; done
}

cleanup() {
    local status=$?
    stop_daemon
    unmount_work
    if [[ $keep == 0 ]]; then
        rm -rf "$work"
    else
        say "kept $work (reused next time; remove it with rm -rf when done)"
    fi
    exit "$status"
}

start_daemon() {
    local driver
    for driver in overlay2 vfs; do
        # Lower priority than interactive work; containerd and the containers inherit it.
        nice -n 10 dockerd --storage-driver="$driver" --bridge=none --iptables=false \
            --ip-forward=false --ip-masq=false --data-root "$work/data" --exec-root "$work/exec" \
            --pidfile "$work/dockerd.pid" -H "$DOCKER_HOST" > "$work/dockerd.log" 2>&1 &
        for _ in $(seq 60); do
            daemon_up && { say "private dockerd up (storage driver $driver)"; return 0; }
            kill -0 $! 2> /dev/null || break
            sleep 0.5
        done
        kill $! 2> /dev/null || true
        wait $! 2> /dev/null || true
        rm -rf "$work/data" "$work/exec"
    done
    tail -5 "$work/dockerd.log" >&2
    skip "dockerd does not start here (log above)"
}

have_image() { docker image inspect "$1" > /dev/null 2>&1; }
image_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.1f", $1 / 1e6 }'; }

make_debian_slim() {
    have_image debian:bookworm-slim && return 0
    local t=$SECONDS root=$work/rootfs
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
        fail "debootstrap failed (log: $work/debootstrap.log)"
    (cd "$root" && rm -rf usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* \
        var/cache/apt/*.bin var/lib/apt/lists/* var/log/* tmp/*)
    tar --numeric-owner -C "$root" -c . | docker import --change 'CMD ["bash"]' - debian:bookworm-slim > /dev/null
    rm -rf "$root"
    say "debian:bookworm-slim made locally ($(image_mb debian:bookworm-slim) MB, $((SECONDS - t)) s)"
}

make_rust() {
    have_image rust:1-bookworm && return 0
    local t=$SECONDS ctx=$work/rust-context sysroot
    sysroot=$(rustc --print sysroot) || fail "no Rust toolchain on this host (rustc --print sysroot)"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp -al "$sysroot" "$ctx/rust" 2> /dev/null || cp -a "$sysroot" "$ctx/rust"
    rm -rf "$ctx/rust/share/doc"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
    cat > "$ctx/Dockerfile" << 'EOF'
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      gcc g++ libc6-dev make binutils ca-certificates > /dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
    docker build -q --network host -t rust:1-bookworm "$ctx" > /dev/null
    rm -rf "$ctx"
    say "rust:1-bookworm made locally ($(docker run --rm --network none rust:1-bookworm rustc --version), $((SECONDS - t)) s)"
}

build_image() {
    local t=$SECONDS
    if [[ -z "$prebuilt" ]]; then
        make_rust
        # The build stage fetches crates from crates.io, hence the host network for the build.
        docker build --network host -t "$image" "$repo" > "$work/build.log" 2>&1 ||
            { tail -30 "$work/build.log" >&2; fail "docker build failed (log: $work/build.log)"; }
        say "docker build (both stages, release build inside): $((SECONDS - t)) s"
    else
        # The Dockerfile's runtime stage as it stands, with the binary from the build context.
        local ctx=$work/runtime-context
        rm -rf "$ctx"
        mkdir -p "$ctx"
        cp "$prebuilt" "$ctx/svc-overlay"
        # As the build stage does (CARGO_PROFILE_RELEASE_DEBUG=0): no debug info in the image.
        if command -v strip > /dev/null; then strip --strip-debug "$ctx/svc-overlay"; fi
        awk '/^FROM .* AS runtime/ { p = 1 } p' Dockerfile |
            sed 's|^COPY --from=build /svc-overlay |COPY svc-overlay |' > "$ctx/Dockerfile"
        grep -q '^COPY svc-overlay ' "$ctx/Dockerfile" ||
            fail "the Dockerfile's runtime stage no longer has 'COPY --from=build /svc-overlay …'"
        docker build --network none -t "$image" "$ctx" > "$work/build.log" 2>&1 ||
            { tail -30 "$work/build.log" >&2; fail "docker build failed (log: $work/build.log)"; }
        rm -rf "$ctx"
        say "docker build (runtime stage, binary $prebuilt): $((SECONDS - t)) s"
    fi
    say "image $image: $(image_mb "$image") MB (base debian:bookworm-slim $(image_mb debian:bookworm-slim) MB)"
}

# ---- running it -----------------------------------------------------------------------------

# An operator command in the image, as uid 10001, with DIR mounted as /etc/svc-overlay.
tool() { # dir args...
    local dir=$1
    shift
    docker run --rm --network none --user 10001:10001 -v "$dir:/etc/svc-overlay" "$image" "$@"
}

make_node_dir() { # dir advertise-port peers-toml
    local dir=$1 port=$2 peers=$3
    install -d -m 0700 -o 10001 -g 10001 "$dir"
    cat > "$dir/Overlay.toml" << EOF
[node]
advertise = "127.0.0.1:$port"
peers = [$peers]

[tls]
cert = "id/cert.pem"
key = "id/key.pem"

[auth]
token_file = "node.token"

[[auth.keys]]
kid = "k1"
tid = "overlay"
key_file = "k1.key"
EOF
    chown 10001:10001 "$dir/Overlay.toml"
}

make_identity() { # dir -> prints the PeerId
    local dir=$1 id
    id=$(tool "$dir" keygen --out /etc/svc-overlay/id | grep -o 'peer:[0-9a-f]\{64\}' | head -1)
    [[ -n "$id" ]] || fail "keygen in the image printed no PeerId"
    tool "$dir" token mint --cap-key k1:overlay:/etc/svc-overlay/k1.key --peer "$id" \
        --method overlay --ttl 1d > "$dir/node.token"
    chown 10001:10001 "$dir/node.token"
    chmod 0600 "$dir/node.token"
    echo "$id"
}

pid_of() { docker inspect -f '{{.State.Pid}}' "$1"; }

# HTTP from the host into a container's network namespace (its loopback).
in_netns() { # container command...
    local pid
    pid=$(pid_of "$1")
    shift
    nsenter -t "$pid" -n "$@"
}

code_of() { # container url [curl args...] -> the HTTP status (000 when no answer)
    local c=$1 url=$2
    shift 2
    in_netns "$c" curl -s -m 3 -o /dev/null -w '%{http_code}' "$@" "$url" || true
}

answer_of() { # container url -> "BODY (STATUS)", for the log
    in_netns "$1" curl -s -m 3 -w ' (%{http_code})' "$2" || true
}

body_of() { # container url -> the body of a 2xx answer
    in_netns "$1" curl -fsS -m 3 "$2"
}

wait_for() { # seconds description command...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 2))); do
        "$@" && return 0
        sleep 0.5
    done
    docker logs --tail 20 "${names[1]}" >&2 || true
    fail "$what within $seconds s"
}

status_is() { # container url code
    [[ "$(code_of "$1" "$2")" == "$3" ]]
}

metric() { # container port name -> value (0 when absent)
    body_of "$1" "http://127.0.0.1:$2/metrics" | awk -v n="$3" '$1 == n { v = $2 } END { print v + 0 }'
}

peer_listed() { # container port peer-id
    body_of "$1" "http://127.0.0.1:$2/v1/peers" | grep -q "$3"
}

delivered_on_b() { [[ "$(metric "${names[0]}" 9465 overlay_gossip_delivered_total)" -ge 1 ]]; }

check_process() { # container: uid/gid 10001, no capabilities
    local pid status
    pid=$(pid_of "$1")
    status=$(cat "/proc/$pid/status")
    grep -Eq '^Uid:\s+10001\s+10001\s+10001\s+10001$' <<< "$status" ||
        fail "$1 does not run as uid 10001: $(grep ^Uid: <<< "$status")"
    grep -Eq '^Gid:\s+10001\s+10001\s+10001\s+10001$' <<< "$status" ||
        fail "$1 does not run as gid 10001: $(grep ^Gid: <<< "$status")"
    grep -Eq '^CapEff:\s+0+$' <<< "$status" || fail "$1 has capabilities: $(grep ^CapEff: <<< "$status")"
}

check_json_logs() { # container
    docker logs "$1" 2>&1 | head -20 | python3 -c '
import json, sys
lines = [l for l in sys.stdin if l.strip()]
assert lines, "no log lines"
for l in lines:
    o = json.loads(l)
    assert "timestamp" in o and "level" in o, l
' || fail "$1 does not log JSON lines with timestamp and level"
}

stop_and_check() { # container
    local t=$SECONDS code
    docker stop -t 30 "$1" > /dev/null
    code=$(docker inspect -f '{{.State.ExitCode}}' "$1")
    [[ "$code" == 0 ]] || { docker logs --tail 20 "$1" >&2; fail "$1 exited $code after SIGTERM"; }
    say "$1: SIGTERM -> drained, exit 0 in $((SECONDS - t)) s"
}

run_checks() {
    local a=$work/node-a b=$work/node-b id_a out
    rm -rf "$a" "$b" # a kept work directory's nodes (the tools refuse to overwrite keys)
    make_node_dir "$a" 9415 ""
    tool "$a" cap-key new --out /etc/svc-overlay/k1.key > /dev/null
    id_a=$(make_identity "$a")
    make_node_dir "$b" 9416 "\"$id_a@127.0.0.1:9415\""
    install -m 0600 -o 10001 -g 10001 "$a/k1.key" "$b/k1.key"
    make_identity "$b" > /dev/null
    out=$(docker run --rm --network none -v "$a:/etc/svc-overlay:ro" "$image" \
        --config /etc/svc-overlay/Overlay.toml config check 2>&1) ||
        { echo "$out" >&2; fail "config check in the image"; }
    say "operator commands in the image as uid 10001 (cap-key new, keygen, token mint, config check): ok"

    # Hardened as documented: read-only root, no capabilities, no privilege gain.
    local hardening=(--read-only --cap-drop ALL --security-opt no-new-privileges)
    docker run -d --name "${names[1]}" --network none "${hardening[@]}" \
        -v "$a:/etc/svc-overlay:ro" "$image" > /dev/null
    wait_for 30 "node a answers /healthz 200" status_is "${names[1]}" http://127.0.0.1:9415/healthz 200
    say "node a: /healthz $(answer_of "${names[1]}" http://127.0.0.1:9415/healthz)"
    say "node a alone: /readyz $(answer_of "${names[1]}" http://127.0.0.1:9415/readyz)"
    # Node b shares node a's network namespace: its own ports, node a on 127.0.0.1:9415.
    # (The daemon runs with --ip-forward=false, so docker warns that networking will not work.)
    docker run -d --name "${names[0]}" --network "container:${names[1]}" "${hardening[@]}" \
        -e OVERLAY_BIND=0.0.0.0:9416 -e METRICS_ADDR=0.0.0.0:9465 \
        -v "$b:/etc/svc-overlay:ro" "$image" > /dev/null 2> "$work/run-b.err" ||
        { cat "$work/run-b.err" >&2; fail "docker run node b"; }
    grep -v 'IPv4 forwarding' "$work/run-b.err" >&2 || true
    wait_for 60 "node a /readyz 200 with a peer" status_is "${names[1]}" http://127.0.0.1:9415/readyz 200
    wait_for 60 "node b /readyz 200 with a peer" status_is "${names[0]}" http://127.0.0.1:9416/readyz 200
    wait_for 60 "node b lists node a in /v1/peers" peer_listed "${names[0]}" 9416 "$id_a"
    say "node b has a session with node a; both: /readyz $(answer_of "${names[0]}" http://127.0.0.1:9416/readyz)"
    check_process "${names[1]}"
    check_process "${names[0]}"
    say "both nodes run as uid/gid 10001 with no capabilities, read-only root"
    check_json_logs "${names[1]}"
    check_json_logs "${names[0]}"
    say "logs: JSON lines"
    out=$(code_of "${names[1]}" http://127.0.0.1:9415/v1/broadcast -X POST \
        -H 'content-type: application/octet-stream' --data-binary 'container-check')
    [[ "$out" == 202 ]] || fail "POST /v1/broadcast on node a: status $out"
    wait_for 20 "node b delivers the broadcast" delivered_on_b
    say "broadcast on node a delivered on node b (metrics on :9464/:9465)"
    stop_and_check "${names[0]}"
    stop_and_check "${names[1]}"
}

trap cleanup EXIT
mkdir -p "$work"
stop_daemon
unmount_work
start_daemon
make_debian_slim
build_image
run_checks
say "disk used by the work directory: $(du -sh "$work" 2> /dev/null | cut -f1)"
say "all checks passed in $((SECONDS - start_time)) s"
