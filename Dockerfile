# gatekeeper image: a static binary on scratch.
#
#   scripts/image.sh            builds it (and the Debian base image, offline if
#                               no registry answers), tagged gatekeeper:latest
#
# Builder: Debian 12 with the -dev packages; `make static` links everything
# (libevent, c-ares, libyaml, http-parser, glibc) into one stripped binary.
ARG BASE=debian:12
FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc make libc6-dev pkg-config libevent-dev libyaml-dev libc-ares-dev libhttp-parser-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include include
COPY src src
COPY demo demo
RUN make static

# Final: nothing but the binary and its default config. No shell, no libc
# files: `gatekeeper health` is the health check.
FROM scratch
COPY --from=build /src/build/gatekeeper-static /gatekeeper
COPY conf/image.yaml /etc/gatekeeper/gatekeeper.yaml
# A numeric non-root user: no /etc/passwd needed. Docker sets
# net.ipv4.ip_unprivileged_port_start=0 in a container's own network
# namespace, so it binds 80 or 443 without a capability; with
# network_mode: host, listen above 1023 instead.
USER 65532:65532
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/gatekeeper", "health"]
ENTRYPOINT ["/gatekeeper"]
CMD ["-c", "/etc/gatekeeper/gatekeeper.yaml"]
