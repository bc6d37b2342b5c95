#!/usr/bin/env bash
# A Docker engine of the project's own, for machines that reach package registries but no image registry
# (this project's CI): nothing is pulled, the base image is made from Debian packages.
#
#   deploy/docker/local-docker.sh prepare   engine running, base image loaded, compose plugin built (cached)
#   deploy/docker/local-docker.sh env       the exports that point docker and docker compose at it
#   deploy/docker/local-docker.sh build     the project's image (pioneer-telemetry:local) on the base
#   deploy/docker/local-docker.sh up        prepare, a local Kafka reachable from containers, build, compose up
#   deploy/docker/local-docker.sh down      compose down, that Kafka stopped, the engine stopped
#   deploy/docker/local-docker.sh stop      the engine stopped (containers, images and volumes are kept)
#   deploy/docker/local-docker.sh bridge-address   the host's address on the default bridge (for Kafka)
#
# - engine: Debian's docker.io (installed when missing), dockerd with its own data root, exec root,
#   pidfile and unix socket under $PIONEER_DOCKER_DIR (default ~/.local/state/pioneer-telemetry/docker),
#   so it never meets another daemon on the machine.
# - base image: `debootstrap --variant=minbase` bookworm with python3 and python3-venv, plus this
#   machine's CA bundle (pip inside a build must trust the same TLS proxy the machine does), imported as
#   pioneer-telemetry-base:bookworm and cached as a tarball under $PIONEER_CACHE_DIR/docker.
# - compose: the docker compose v2 CLI plugin built from its Go module (github.com/docker/compose/v5)
#   once, cached under $PIONEER_CACHE_DIR/bin, installed into $DOCKER_CONFIG/cli-plugins.
# Users with an ordinary Docker need none of this: `docker compose -f deploy/docker-compose.yml up`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${PIONEER_DOCKER_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/pioneer-telemetry/docker}
CACHE=${PIONEER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pioneer-telemetry}
COMPOSE_VERSION=v5.6.0
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${PIONEER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=pioneer-telemetry-base:$DEBIAN_SUITE
IMAGE=${PIONEER_IMAGE:-pioneer-telemetry:local}
KAFKA_DIR=${PIONEER_COMPOSE_KAFKA_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/pioneer-telemetry/compose-kafka}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

export DOCKER_HOST=unix://$STATE/docker.sock
export DOCKER_CONFIG=$STATE/config
export COMPOSE_FILE=$ROOT/deploy/docker-compose.yml:$ROOT/deploy/compose.external-kafka.yml

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

need_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

engine_start() {
  need_packages
  mkdir -p "$STATE" "$DOCKER_CONFIG"
  if engine_answers; then return; fi
  log "starting dockerd (data root $STATE/data)"
  rm -f "$STATE/docker.sock" "$STATE/dockerd.pid"
  setsid dockerd --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
    -H "$DOCKER_HOST" >>"$STATE/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    engine_answers && return
    sleep 0.5
  done
  tail -20 "$STATE/dockerd.log" >&2
  log "dockerd did not answer within 60 s"
  return 1
}

engine_stop() {
  [[ -f $STATE/dockerd.pid ]] || return 0
  local pid
  pid=$(cat "$STATE/dockerd.pid")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$STATE/dockerd.pid"
}

base_image() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
  local tarball=$CACHE/docker/base-$DEBIAN_SUITE.tar
  if [[ ! -f $tarball ]]; then
    local rootfs
    rootfs=$(mktemp -d)
    log "debootstrap $DEBIAN_SUITE (minbase, python3, python3-venv) from $DEBIAN_MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$STATE/debootstrap.log" 2>&1 \
      || { tail -20 "$STATE/debootstrap.log" >&2; rm -rf "$rootfs"; return 1; }
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$CACHE/docker"
    tar -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  log "importing $BASE_IMAGE from $tarball"
  docker import "$tarball" "$BASE_IMAGE" >/dev/null
}

compose_plugin() {
  local binary=$CACHE/bin/docker-compose-$COMPOSE_VERSION
  if [[ ! -x $binary ]]; then
    local go=go
    command -v go >/dev/null || go=/usr/local/go/bin/go
    log "building the docker compose plugin $COMPOSE_VERSION from its Go module"
    local source work
    source=$("$go" mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" \
      | "$PYTHON" -c "import json, sys; print(json.load(sys.stdin)['Dir'])")
    work=$(mktemp -d)
    cp -r "$source/." "$work"
    chmod -R u+w "$work"
    mkdir -p "$CACHE/bin"
    # built inside its own module: its go.mod's exclude directives rule out `go install pkg@version`
    (cd "$work" && "$go" build -trimpath -o "$binary.part" \
      -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" ./cmd)
    mv "$binary.part" "$binary"
    rm -rf "$work"
  fi
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  ln -sf "$binary" "$DOCKER_CONFIG/cli-plugins/docker-compose"
}

prepare() {
  engine_start
  base_image
  compose_plugin
}

build() {
  log "building $IMAGE on $BASE_IMAGE"
  docker build --quiet --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "GIT_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)" \
    -t "$IMAGE" "$ROOT" >/dev/null
  # the image of the previous build is left untagged: drop it, or every rebuild keeps ~400 MB more
  docker image prune --force --filter "label=org.opencontainers.image.title=pioneer-telemetry" >/dev/null
}

api_token() {  # api_token DIR: a read API token only the containers' user (10001) can read, made once
  install -d -m 0755 "$1"
  [[ -s $1/api-token ]] || "$PYTHON" -c "import secrets; print(secrets.token_urlsafe(32))" \
    | install -m 0400 -o 10001 -g 10001 /dev/stdin "$1/api-token"
}

bridge_address() {  # where containers reach the host: the default bridge's gateway
  local address name
  address=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
  if [[ -z $address ]]; then
    # an engine started when its bridge interface already had its address (a restart) leaves the gateway
    # out of the network's IPAM config: the interface's own address is the gateway
    name=$(docker network inspect bridge --format '{{index .Options "com.docker.network.bridge.name"}}')
    address=$(ip -4 -o addr show dev "$name" | awk '{ split($4, a, "/"); print a[1]; exit }')
  fi
  [[ -n $address ]] || { log "the docker bridge has no address"; return 1; }
  printf '%s\n' "$address"
}

up() {
  prepare
  build
  local address bootstrap
  address=$(bridge_address)
  bootstrap=$("$ROOT/.venv/bin/pioneer-telemetry" kafka start --host "$address" --port 0 --data-dir "$KAFKA_DIR")
  log "Kafka at $bootstrap (data in $KAFKA_DIR)"
  api_token "$ROOT/deploy/secrets"
  KAFKA_BOOTSTRAP_SERVERS=$bootstrap docker compose --project-name pioneer-telemetry up --detach --wait --wait-timeout 300 \
    "$@"
  log "API on ${PIONEER_API_PUBLISH:-127.0.0.1:6066} (token in deploy/secrets/api-token), dashboard on ${PIONEER_DASHBOARD_PUBLISH:-127.0.0.1:8501}"
}

down() {
  if engine_answers; then
    # every profile, so that the demo simulator or anything else started with --profile goes too
    KAFKA_BOOTSTRAP_SERVERS=unused docker compose --project-name pioneer-telemetry --profile '*' down "$@"
  fi
  "$ROOT/.venv/bin/pioneer-telemetry" kafka stop --data-dir "$KAFKA_DIR" || true
  engine_stop
}

env_exports() {
  printf 'export DOCKER_HOST=%q DOCKER_CONFIG=%q COMPOSE_FILE=%q\n' "$DOCKER_HOST" "$DOCKER_CONFIG" "$COMPOSE_FILE"
}

case ${1:-} in
  prepare) prepare ;;
  env) env_exports ;;
  build) prepare && build ;;
  up) shift && up "$@" ;;
  down) shift && down "$@" ;;
  stop) engine_stop ;;
  bridge-address) bridge_address ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
