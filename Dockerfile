# Multi-stage build of the svc-overlay daemon: a full Rust toolchain builds it, a slim Debian
# runtime runs it as an unprivileged user. See docs/deploy/README.md ("Container");
# scripts/container-check.sh builds and checks it.
#
#   docker build -t svc-overlay .
#   docker run --rm -p 9415:9415 -p 9464:9464 --read-only --cap-drop ALL \
#     -v /etc/svc-overlay:/etc/svc-overlay:ro svc-overlay

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# No debug info in the image's binary (the release profile keeps it for profiling on a host):
# 13 MB instead of 66 MB. Symbol names stay, for backtraces and profilers.
RUN CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release --locked --bin svc-overlay \
 && install -m 0755 target/release/svc-overlay /svc-overlay

FROM debian:bookworm-slim AS runtime
# A fixed, unprivileged uid/gid so mounted secret files can be owned by it (mode 0600).
RUN groupadd --system --gid 10001 svc-overlay \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin svc-overlay
COPY --from=build /svc-overlay /usr/local/bin/svc-overlay
USER 10001:10001
ENV LOG_FORMAT=json \
    AMNESIA=true \
    OVERLAY_BIND=0.0.0.0:9415 \
    METRICS_ADDR=0.0.0.0:9464
# Overlay sessions and same-port HTTP (/healthz, /readyz, control API); metrics.
EXPOSE 9415 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/svc-overlay"]
CMD ["--config", "/etc/svc-overlay/Overlay.toml"]
