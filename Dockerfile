# onair: multi-stage build on Debian bookworm (FFmpeg 5.1).
# docker build -t onair . && docker run -p 1935:1935 -p 8080:8080 -p 8890:8890/udp -v onair-data:/var/lib/onair -v $PWD/config/default.toml:/etc/onair/onair.toml onair
FROM rust:1-bookworm AS build
WORKDIR /src
COPY scripts/packages-build.txt scripts/
RUN apt-get update -qq \
 && grep -v '^\s*#' scripts/packages-build.txt | grep -v '^\s*$' | xargs apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# The binary is copied out of target/ so that a cache mounted there (scripts/container-test:
# `podman build -v CACHE:/src/target`) still leaves it in the image layer.
RUN cargo build --release --locked && strip -o /usr/local/bin/onair target/release/onair

FROM debian:bookworm-slim
# Only the FFmpeg shared libraries the binary links against, plus CA certificates for announce.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavfilter8 libavdevice59 libssl3 libsrt1.5-gnutls ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent onair
COPY --from=build /usr/local/bin/onair /usr/local/bin/onair
COPY config/default.toml /etc/onair/onair.toml
# The working directory and the database (storage.data_dir) live in a volume the onair user
# owns; other relative paths land there too.
RUN mkdir -p /var/lib/onair && chown onair /var/lib/onair
ENV ONAIR__STORAGE__DATA_DIR=/var/lib/onair
VOLUME /var/lib/onair
WORKDIR /var/lib/onair
USER onair
# 1936: RTMPS, when rtmp.tls_listen is set; 8890/udp: SRT. 8189/udp: WebRTC media (WHIP);
# set webrtc.public_addresses to the host's address when publishing it from a container.
EXPOSE 1935 1936 8080 8189/udp 8890/udp
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/onair"]
CMD ["serve", "--config", "/etc/onair/onair.toml"]
