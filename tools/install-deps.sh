#!/usr/bin/env bash
# Installs what presenced needs to build and test, from Debian 12's packages.
# With --bench, also what tools/bench/run.sh needs (Redis among them: on a
# machine with systemd its package starts a Redis service).
# Runs as root, or re-runs itself with sudo.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi

packages=(
  # build
  cmake g++ make ninja-build pkg-config
  # dependencies (see README: why each)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libsqlitecpp-dev libsqlite3-dev grpc-proto
  prometheus-cpp-dev  # presenced's /metrics: prometheus-cpp's data model and text format
  libicu-dev  # a custom status's emoji: ICU's grapheme segmentation and emoji properties
  libboost-dev libssl-dev  # Boost.Beast (presence-rest; presenced's /metrics), OpenSSL (JWT, tokens, TLS checks)
  python3 python3-grpcio python3-protobuf  # the Python client
  python3-django python3-djangorestframework python3-djangorestframework-simplejwt  # the Django app (DRF views; SimpleJWT Bearer tokens, as the chat backend uses)
  python3-venv python3-pip python3-setuptools python3-wheel  # pip-installing client/python offline (tests: python_installed_package)
  # tests and checks
  libgtest-dev libgmock-dev sqlite3 clang-format
  chromium chromium-driver  # the status page and presence.js, tested headless
  clang-14 libclang-rt-14-dev llvm-14  # fuzz/run.sh: clang, libFuzzer, llvm-symbolizer
  curl  # the REST proxy's end-to-end tests
  faketime  # tests/clock_step_test: libfaketime steps the wall clock of a running presenced
  python3-hyperframe python3-hpack  # tests/hostile: raw HTTP/2 frames past the stream limit
  util-linux  # tests/hostile: prlimit, presenced under a low open-file limit
  # tests/ops: promtool checks and unit-tests the alert rules; the test reads
  # YAML. On a machine with systemd the package also starts a Prometheus
  # service (on :9090); the tests do not use it.
  prometheus python3-yaml
  graphviz  # docs/rich-presence-states.svg: rendered from its .dot source, checked by tests/docs_test.sh
)
if [ "${1:-}" = "--bench" ]; then
  # load generators, the Redis baseline, the chart, the classic-SQL script
  packages+=(nghttp2-client redis-server gnuplot-nox python3)
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"

# buf (its `buf curl` is the reflection-only third-party gRPC client of the
# tests; grpcurl is not packaged in Debian 12) comes from the npm registry.
buf_version=1.75.0
if ! command -v npm >/dev/null; then
  apt-get install -y -q --no-install-recommends npm
fi
if [ "$(buf --version 2>/dev/null || true)" != "$buf_version" ]; then
  npm install --global --no-fund --no-audit "@bufbuild/buf@$buf_version"
fi

# tests/ops/kubernetes_test.py renders deploy/kubernetes with `kubectl
# kustomize` (offline: client-side dry-runs need a cluster). Debian's
# kubernetes-client, unless a kubectl is installed already: it cannot unpack
# over another package's /usr/bin/kubectl (some machine images ship
# Google's `kubectl` package).
if ! command -v kubectl >/dev/null; then
  apt-get install -y -q --no-install-recommends kubernetes-client
fi
# ... and checks every object against Kubernetes' OpenAPI schema
# (kubernetes-models' validators) and for unknown fields (TypeScript's
# excess-property check on its types). `npm ls pkg@version` succeeds on any
# version, hence the grep.
k8s_npm=(kubernetes-models@4.5.1 typescript@5.9.3)
installed=$(npm ls --global --depth=0 2>/dev/null || true)
for package in "${k8s_npm[@]}"; do
  if ! grep -qF -- "$package" <<<"$installed"; then
    npm install --global --no-fund --no-audit "${k8s_npm[@]}"
    break
  fi
done
