#!/usr/bin/env bash
# make test-compose, first half: a Docker Engine, and the images the stack runs on, kept between runs.
#
# Docker Hub may be out of reach: the base images are then stand-ins made here from Debian's
# packages (debootstrap, then tests/compose/standins/*.Dockerfile), and Tandem's image is built from
# the project's Dockerfile on the python stand-in. Every image stays in the engine: a second run
# rebuilds only what changed (Docker's layer cache is keyed on the files each step copies).
# Writes the build times to var/compose/prepare.env for the tests to report.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/compose
OUT=$ROOT/var/compose
CACHE=${TANDEM_COMPOSE_CACHE:-/var/cache/tandem-compose}
mkdir -p "$OUT" "$CACHE"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Debian's engine and Compose (v1, the one packaged); the CLI as old as the engine it talks to.
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
DOCKER=/usr/bin/docker
if ! $DOCKER info >/dev/null 2>&1; then
  echo "starting dockerd (log: /var/log/dockerd.log)"
  setsid dockerd --storage-driver overlay2 >>/var/log/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 1; done
  $DOCKER info >/dev/null
fi
[ "$($DOCKER info --format '{{.Driver}}')" = overlay2 ] || { echo "dockerd is not on overlay2" >&2; exit 1; }

start=$(now)
# The stand-ins' common base: Debian's minimal system, imported once.
if ! $DOCKER image inspect tandem-standin/debian:bookworm >/dev/null 2>&1; then
  rootfs=$CACHE/rootfs
  rm -rf "$rootfs"
  echo "debootstrap bookworm (once per machine)"
  nice -n 10 debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$OUT/debootstrap.log"
  tar -C "$rootfs" -c . | $DOCKER import - tandem-standin/debian:bookworm >/dev/null
  rm -rf "$rootfs"
fi
# pip in builds from the python stand-in trusts this machine's CA bundle (it is not a secret).
cp /etc/ssl/certs/ca-certificates.crt "$HERE/standins/build-ca.crt"
for name in python rabbitmq postgres smtp-sink; do
  echo "image tandem-standin/$name:bookworm"
  DOCKER_BUILDKIT=1 nice -n 10 $DOCKER build -q -f "$HERE/standins/$name.Dockerfile" \
    -t "tandem-standin/$name:bookworm" "$HERE/standins" >/dev/null
done
standins=$(since "$start")

start=$(now)
echo "image tandem:latest (the project's Dockerfile)"
DOCKER_BUILDKIT=1 nice -n 10 $DOCKER build -q --build-arg PYTHON_IMAGE=tandem-standin/python:bookworm \
  -t tandem:latest "$ROOT" >/dev/null
app=$(since "$start")
size=$($DOCKER image inspect tandem:latest --format '{{.Size}}')
$DOCKER image prune -f >/dev/null  # the layers of earlier versions, untagged since
printf 'STANDINS_SECONDS=%s\nAPP_BUILD_SECONDS=%s\nAPP_IMAGE_BYTES=%s\n' "$standins" "$app" "$size" \
  | tee "$OUT/prepare.env"
