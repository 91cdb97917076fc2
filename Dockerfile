# presenced in a container (docs/deployment.md). From the repository root:
#   docker build -t presenced .
#   docker run -d --name presenced --stop-timeout 30 -p 127.0.0.1:50051:50051 \
#     -v presence-data:/var/lib/presenced presenced
# Arguments after the image name are more presenced flags; a later flag wins,
# e.g. `presenced --online_window=10m`.

# Build: the compiler and the -dev packages of tools/install-deps.sh, without
# its test tools (Chromium, Django, buf, ...).
FROM debian:12 AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      cmake g++ make pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev libsqlitecpp-dev libsqlite3-dev grpc-proto \
      prometheus-cpp-dev libboost-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DPRESENCE_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" \
 && cmake --install /build --prefix /usr/local --strip

# Run: the shared libraries the binaries link (SQLiteCpp is linked
# statically, so only SQLite's own library), and no compiler.
FROM debian:12
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libsqlite3-0 libssl3 \
      libprometheus-cpp-core1.0 \
 && rm -rf /var/lib/apt/lists/*
# presence-rest is in the image too: run it with --entrypoint presence-rest.
COPY --from=build /usr/local/bin/presenced /usr/local/bin/presencectl \
                  /usr/local/bin/presence-rest /usr/local/bin/
# Created before VOLUME, so that a new named volume starts owned by the user.
RUN groupadd --system --gid 10001 presenced \
 && useradd --system --uid 10001 --gid presenced --home-dir /var/lib/presenced \
      --shell /usr/sbin/nologin presenced \
 && install -d -o presenced -g presenced -m 0700 /var/lib/presenced
USER 10001:10001
VOLUME /var/lib/presenced
# gRPC (plaintext, no authentication: publish it only where your backends
# can reach it).
EXPOSE 50051
# Graceful: health NOT_SERVING, calls in flight finish (5 s at most), the
# queue is committed, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/presenced", "--listen=0.0.0.0:50051", "--db=/var/lib/presenced/presence.db"]
