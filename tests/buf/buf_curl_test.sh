#!/usr/bin/env bash
# buf curl, a third-party gRPC client, against a real presenced through server
# reflection only (no .proto files): lists the services and methods, calls
# Heartbeat, GetPresence and Health/Check, and checks that an invalid request
# is answered INVALID_ARGUMENT with the server's message. Then each reflection
# protocol on its own (grpc-v1, grpc-v1alpha). Then, with --auth_tokens_file
# (reflection off), the README's recipe: the schema from .proto files with
# --schema, Debian's health.proto for Health and proto/ for the API.
#
# Usage: buf_curl_test.sh BUILD_DIR SOURCE_DIR GRPC_PROTO_DIR
# (presenced is BUILD_DIR/bin/presenced; GRPC_PROTO_DIR holds
# grpc/health/v1/health.proto, Debian: /usr/share/grpc-proto)
set -euo pipefail
build_dir=$1 source_dir=$2 grpc_proto_dir=${3:-/usr/share/grpc-proto}

if ! command -v buf >/dev/null; then
  echo "buf_curl_test: FAIL: 'buf' is not on PATH. tools/install-deps.sh installs it" \
       "(npm install --global @bufbuild/buf@1.75.0)." >&2
  exit 1
fi
bin=$build_dir/bin
if [ ! -x "$bin/presenced" ]; then
  echo "buf_curl_test: FAIL: $bin/presenced is missing; build it first" >&2
  exit 1
fi

work=$(mktemp -d)
source "$source_dir/tools/bench/common.sh"  # start_presenced, cleanup
trap cleanup EXIT

fail() {
  echo "buf_curl_test: FAIL: $*" >&2
  echo "--- presenced log:" >&2
  cat "$server_log" >&2
  exit 1
}

# buf curl over plaintext HTTP/2 to the loopback presenced, with the schema
# from server reflection only (no --schema: nothing is fetched from the Buf
# Schema Registry). No proxy, and buf's cache inside $work, so that buf
# reaches nothing but presenced and writes nothing to $HOME. buf tries
# grpc.reflection.v1 first and falls back to v1alpha only if v1 is
# UNIMPLEMENTED; presenced serves both.
bufcurl() {
  env -u http_proxy -u https_proxy -u all_proxy -u HTTP_PROXY -u HTTPS_PROXY \
    -u ALL_PROXY BUF_CACHE_DIR="$work/buf-cache" \
    buf curl --protocol grpc --http2-prior-knowledge --connect-timeout 5 \
    --timeout 20s "$@"
}

# call METHOD [JSON [BUF_FLAGS...]]: prints the response; fails the test if
# the call fails.
call() {
  local method=$1 data=${2:-'{}'} out
  shift $(($# < 2 ? $# : 2))
  out=$(bufcurl "$@" -d "$data" "http://$address/$method" 2> "$work/stderr") ||
    fail "buf curl $* $method $data exited $?: $(cat "$work/stderr")"
  printf '%s\n' "$out"
}

# refused EXIT_CODE WHAT BUF_ARGS...: fails unless buf curl exits EXIT_CODE;
# leaves its stderr in $work/stderr.
refused() {
  local want=$1 what=$2 status=0
  shift 2
  bufcurl "$@" > "$work/stdout" 2> "$work/stderr" || status=$?
  [ "$status" -eq "$want" ] ||
    fail "$what: expected exit $want, got $status: $(cat "$work/stdout" "$work/stderr")"
}

# expect WHAT JSON PYTHON_EXPR: fails unless PYTHON_EXPR, over the parsed JSON
# `j`, is true.
expect() {
  local what=$1 json=$2 expr=$3
  python3 -c '
import datetime, json, sys
j = json.loads(sys.argv[1])
ts = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$json" "$expr" ||
    fail "$what: expected $expr, got: $json"
}

start_presenced --db="$work/p.db"

services=$(bufcurl --list-services "http://$address") || fail "--list-services"
for service in presence.v1.PresenceService grpc.health.v1.Health; do
  grep -qx "$service" <<< "$services" ||
    fail "--list-services lacks $service: $services"
done
methods=$(bufcurl --list-methods "http://$address") || fail "--list-methods"
for method in Heartbeat BatchHeartbeat MarkOffline ListOnline GetPresence WatchPresence; do
  grep -qx "presence.v1.PresenceService/$method" <<< "$methods" ||
    fail "--list-methods lacks presence.v1.PresenceService/$method: $methods"
done

beat=$(call presence.v1.PresenceService/Heartbeat '{"user_id": 42}')
expect "first Heartbeat" "$beat" 'j["heartbeatInterval"] == "120s" and j["becameOnline"] is True'
expect "first Heartbeat" "$beat" \
  'datetime.timedelta(0) < ts(j["onlineUntil"]) - ts(j["serverTime"]) <= datetime.timedelta(minutes=5)'
# protobuf's JSON mapping leaves out false.
beat=$(call presence.v1.PresenceService/Heartbeat '{"user_id": 42}')
expect "second Heartbeat" "$beat" '"becameOnline" not in j and j["heartbeatInterval"] == "120s"'

presence=$(call presence.v1.PresenceService/GetPresence '{"user_ids": [42, 7]}')
expect "GetPresence" "$presence" \
  '[(u["userId"], u["status"]) for u in j["users"]] == [("42", "STATUS_ONLINE"), ("7", "STATUS_OFFLINE")]'
expect "GetPresence" "$presence" 'j["users"][0]["liveSessions"] == 1 and "serverTime" in j'

health=$(call grpc.health.v1.Health/Check)
expect "Health/Check" "$health" 'j == {"status": "SERVING"}'
health=$(call grpc.health.v1.Health/Check '{"service": "presence.v1.PresenceService"}')
expect "Health/Check presence.v1.PresenceService" "$health" 'j == {"status": "SERVING"}'

# An RPC error exits with the gRPC code shifted left by 3 (INVALID_ARGUMENT,
# 3: 24) and prints the status as JSON on stderr.
status=0
bufcurl -d '{"user_id": 0}' "http://$address/presence.v1.PresenceService/Heartbeat" \
  > "$work/stdout" 2> "$work/stderr" || status=$?
[ "$status" -eq 24 ] ||
  fail "Heartbeat of user 0: expected exit 24 (INVALID_ARGUMENT), got $status: $(cat "$work/stdout" "$work/stderr")"
expect "Heartbeat of user 0" "$(cat "$work/stderr")" \
  'j["code"] == "invalid_argument" and j["message"] == "user_id must be > 0, got 0"'

# Each reflection protocol on its own: clients that speak only v1 (newer
# grpcurl, grpc-js) or only v1alpha. Each version lists the other.
for protocol in grpc-v1 grpc-v1alpha; do
  services=$(bufcurl --reflect-protocol "$protocol" --list-services "http://$address") ||
    fail "--reflect-protocol $protocol --list-services"
  for service in presence.v1.PresenceService grpc.health.v1.Health \
                 grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection; do
    grep -qx "$service" <<< "$services" ||
      fail "--reflect-protocol $protocol --list-services lacks $service: $services"
  done
  presence=$(call presence.v1.PresenceService/GetPresence '{"user_ids": [42]}' \
             --reflect-protocol "$protocol")
  expect "GetPresence over $protocol" "$presence" 'j["users"][0]["status"] == "STATUS_ONLINE"'
done
stop_presenced

# With --auth_tokens_file reflection is off (both versions), so buf curl
# takes the schema from .proto files: --schema with Debian's health.proto
# for Health (no token: health is exempt), with proto/ for the API (with a
# token). This is the README's recipe.
token=ops-token-5b8e2d1f9a7c3e60
printf 'ops %s\n' "$token" > "$work/tokens"
start_presenced --db="$work/tokens.db" --auth_tokens_file="$work/tokens"
for protocol in grpc-v1 grpc-v1alpha; do
  refused 1 "reflection $protocol with tokens" --reflect-protocol "$protocol" \
    --reflect-header "authorization: Bearer $token" --list-services "http://$address"
  grep -q unimplemented "$work/stderr" ||
    fail "reflection $protocol with tokens: expected unimplemented, got: $(cat "$work/stderr")"
done
health_proto=$grpc_proto_dir/grpc/health/v1/health.proto
health=$(call grpc.health.v1.Health/Check '{}' --schema "$health_proto")
expect "Health/Check with --schema" "$health" 'j == {"status": "SERVING"}'
schemas=(--schema "$source_dir/proto" --schema "$health_proto")
methods=$(bufcurl "${schemas[@]}" --list-methods "http://$address") ||
  fail "--list-methods with --schema"
for method in grpc.health.v1.Health/Check presence.v1.PresenceService/Heartbeat; do
  grep -qx "$method" <<< "$methods" || fail "--list-methods with --schema lacks $method: $methods"
done
health=$(call grpc.health.v1.Health/Check '{"service": "presence.v1.PresenceService"}' "${schemas[@]}")
expect "Health/Check presence.v1.PresenceService with --schema" "$health" 'j == {"status": "SERVING"}'
beat=$(call presence.v1.PresenceService/Heartbeat '{"user_id": 42}' --schema "$source_dir/proto" \
       -H "authorization: Bearer $token")
expect "Heartbeat with --schema and a token" "$beat" 'j["becameOnline"] is True'
# UNAUTHENTICATED is 16: exit 128.
refused 128 "Heartbeat with --schema and no token" --schema "$source_dir/proto" \
  -d '{"user_id": 42}' "http://$address/presence.v1.PresenceService/Heartbeat"
expect "Heartbeat with no token" "$(cat "$work/stderr")" 'j["code"] == "unauthenticated"'

echo "buf curl test: reflection (v1 and v1alpha), Heartbeat, GetPresence, Health/Check," \
     "INVALID_ARGUMENT, and --schema with tokens as expected"
