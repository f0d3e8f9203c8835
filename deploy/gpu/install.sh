#!/usr/bin/env bash
# One command for a rented GPU instance (Ubuntu 22.04/24.04 with the NVIDIA driver: Verda/DataCrunch,
# RunPod, ...): installs ComfyUI (pinned), the models a workshop needs, Node.js 24 and the comfy-multi
# worker agent, and runs ComfyUI + the agent as services. See docs/gpu-hosts.md.
#
#   sudo deploy/gpu/install.sh --server https://workshop.example.org --name gpu1 \
#        --models deploy/gpu/models.example.txt --models-dir /workspace/models
#   (the token: COMFY_MULTI_TOKEN in the environment, --token-file, or --token)
#
# or without a checkout:
#   curl -fsSL <raw URL of this file> | sudo COMFY_MULTI_TOKEN=… bash -s -- --repo <git URL of comfy-multi> \
#        --server https://workshop.example.org --name gpu1 --models <URL of a models list>
#
# Idempotent and resumable: every step leaves a marker in <prefix>/state and is skipped when it is
# done with the same inputs; a re-run after an interruption continues (model downloads resume with
# curl -C -); models already on the persistent models folder with the right sha256 are kept.
#
# Models list: one model per line, `<folder>/<file> <sha256> <url>`; `#` starts a comment, e.g.
#   checkpoints/v1-5-pruned-emaonly-fp16.safetensors 5e8...c0a https://huggingface.co/.../v1-5-pruned-emaonly-fp16.safetensors
# HF_TOKEN in the environment is sent to huggingface.co (gated models).
#
# Test mode (no GPU, no internet): COMFYUI_STANDIN=1 skips apt, torch and the ComfyUI clone and runs
# the ComfyUI stand-in of --agent-src instead; NO_START=1 writes the services without starting them.
set -euo pipefail

# ---- settings (flags win over the environment) ------------------------------------------------------
SERVER=${COMFY_MULTI_SERVER:-}
TOKEN=${COMFY_MULTI_TOKEN:-}
TOKEN_FILE=
NAME=${WORKER_NAME:-}
MODELS_LIST=${MODELS_LIST:-}
MODELS_DIR=${MODELS_DIR:-}
PREFIX=${PREFIX:-}
ETC_DIR=${ETC_DIR:-/etc/comfy-multi}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
SERVICE_USER=${SERVICE_USER:-comfy}
AGENT_SRC=${AGENT_SRC:-}
REPO=${COMFY_MULTI_REPO:-}
REF=${COMFY_MULTI_REF:-main}
COMFYUI_REPO=${COMFYUI_REPO:-https://github.com/Comfy-Org/ComfyUI.git}
COMFYUI_COMMIT=${COMFYUI_COMMIT:-a125cd84b054a57729b5eecab930ca9408719832} # v0.3.64
COMFYUI_FRONTEND_VERSION=${COMFYUI_FRONTEND_VERSION:-1.27.10}             # pinned by its requirements.txt
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu128}
TORCH_PACKAGES=${TORCH_PACKAGES:-torch==2.8.0 torchvision==0.23.0 torchaudio==2.8.0}
NODE_VERSION=${NODE_VERSION:-24.22.3}
COMFYUI_PORT=${COMFYUI_PORT:-8188}
COMFYUI_STANDIN=${COMFYUI_STANDIN:-0}
NO_START=${NO_START:-0}

usage() {
  sed -n '2,25p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Flags: --server URL  --token TOKEN | --token-file FILE  --name NAME  --models FILE|URL
       --models-dir DIR  --prefix DIR (/opt/comfy-multi-gpu)  --user NAME (comfy)
       --agent-src DIR (a comfy-multi checkout) | --repo GIT_URL [--ref REF]  --no-start
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --server) SERVER=$2; shift 2 ;;
    --token) TOKEN=$2; shift 2 ;;
    --token-file) TOKEN_FILE=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --models) MODELS_LIST=$2; shift 2 ;;
    --models-dir) MODELS_DIR=$2; shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --user) SERVICE_USER=$2; shift 2 ;;
    --agent-src) AGENT_SRC=$2; shift 2 ;;
    --repo) REPO=$2; shift 2 ;;
    --ref) REF=$2; shift 2 ;;
    --no-start) NO_START=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ -z "$TOKEN_FILE" ] || TOKEN=$(tr -d '\r\n' <"$TOKEN_FILE")
[ -n "$SERVER" ] || die "--server (COMFY_MULTI_SERVER) is required, e.g. https://workshop.example.org"
[[ $SERVER =~ ^https?:// ]] || die "--server must start with https:// (or http://)"
[ -n "$TOKEN" ] || die "a worker token is required: COMFY_MULTI_TOKEN=… in the environment, --token-file or --token (create one on the control plane: comfy-multi workers token create <name>)"
[ -n "$NAME" ] || NAME=$(hostname | tr -c 'A-Za-z0-9._\n-' '-' | cut -c1-64)
[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "--name must be 1-64 letters, digits, '.', '_' or '-'"
[ "$(id -u)" = 0 ] || die "run as root (sudo): it installs packages and services"
# RunPod keeps only /workspace (its volume) when a pod restarts: everything big goes there.
# Elsewhere, mount a persistent disk and pass --models-dir (and --prefix) on it.
if [ -z "$PREFIX" ]; then
  if [ -d /workspace ]; then PREFIX=/workspace/comfy-multi-gpu; else PREFIX=/opt/comfy-multi-gpu; fi
fi
if [ -z "$MODELS_DIR" ]; then
  if [ -d /workspace ]; then MODELS_DIR=/workspace/models; else MODELS_DIR=/var/lib/comfy-multi-gpu/models; fi
fi
if [ -z "$AGENT_SRC" ] && [ -z "$REPO" ]; then
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." 2>/dev/null && pwd || true)
  if [ -n "$here" ] && grep -q '"name": "comfy-multi"' "$here/package.json" 2>/dev/null; then
    AGENT_SRC=$here
  else
    die "run this from a comfy-multi checkout, or give --repo <git URL of comfy-multi> (or --agent-src DIR)"
  fi
fi

STATE=$PREFIX/state
mkdir -p "$PREFIX" "$STATE" "$MODELS_DIR"
did=0

# step <name> <key> <function> [<check>]: runs the function unless <name> is done with the same key
# and its result is still there (<check>: a recreated instance may keep the state folder but lose
# /etc or /usr/local).
step() {
  local name=$1 key=$2 fn=$3 check=${4:-true}
  if [ "$(cat "$STATE/$name.done" 2>/dev/null || true)" = "$key" ] && "$check"; then
    say "done already: $name"
    return
  fi
  say "step: $name"
  "$fn"
  printf '%s' "$key" >"$STATE/$name.done"
  did=$((did + 1))
}

# ---- system packages ----------------------------------------------------------------------------------
# Runs on every run (a no-op when nothing is missing): packages live outside the persistent prefix.
install_packages() {
  [ "$COMFYUI_STANDIN" != 1 ] || return 0
  local need=()
  command -v git >/dev/null || need+=(git)
  command -v curl >/dev/null || need+=(curl)
  command -v python3 >/dev/null || need+=(python3)
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  command -v xz >/dev/null || need+=(xz-utils)
  [ -e /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
  if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
    did=$((did + 1))
  fi
}

service_user() {
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    say "creating the service user $SERVICE_USER"
    useradd --system --create-home --home-dir "/home/$SERVICE_USER" --shell /usr/sbin/nologin "$SERVICE_USER"
    did=$((did + 1))
  fi
}
agent_present() { [ -f "$PREFIX/comfy-multi/dist/cli/index.js" ]; }
comfyui_present() { [ -f "$PREFIX/ComfyUI/main.py" ]; }
venv_present() { [ -x "$PREFIX/venv/bin/python" ]; }
model_paths_present() { [ -f "$PREFIX/ComfyUI/extra_model_paths.yaml" ]; }
services_present() {
  [ -f "$ETC_DIR/worker.env" ] && [ -f "$SYSTEMD_DIR/comfyui.service" ] && [ -f "$SYSTEMD_DIR/comfy-multi-worker.service" ]
}

# ---- Node.js 24 -------------------------------------------------------------------------------------
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
NODE_BIN=
find_node() {
  local n
  for n in "$PREFIX/node/bin/node" "$(command -v node 2>/dev/null || true)"; do
    if [ -n "$n" ] && [ -x "$n" ] && [ "$(node_major "$n")" -ge 24 ]; then NODE_BIN=$(readlink -f "$n"); return 0; fi
  done
  return 1
}
install_node() {
  find_node && return
  local base="https://nodejs.org/dist/v$NODE_VERSION" file="node-v$NODE_VERSION-linux-x64.tar.xz" tmp
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/$file" "$base/$file"
  curl -fsSL --retry 3 -o "$tmp/SHASUMS256.txt" "$base/SHASUMS256.txt"
  (cd "$tmp" && grep " $file\$" SHASUMS256.txt | sha256sum -c --quiet -) || die "Node.js download does not match its SHASUMS256"
  rm -rf "$PREFIX/node" && mkdir -p "$PREFIX/node"
  tar -xJf "$tmp/$file" -C "$PREFIX/node" --strip-components=1
  rm -rf "$tmp"
  find_node || die "Node.js $NODE_VERSION does not run here"
}

# ---- the agent ---------------------------------------------------------------------------------------
# What the agent step installs: the source checkout's built files, or the repository and ref.
agent_key() {
  if [ -n "$AGENT_SRC" ]; then
    (cd "$AGENT_SRC" && echo "$AGENT_SRC" && sha256sum package-lock.json &&
      find bin dist src/admin/ui/dist deploy/gpu -type f -printf '%p %s %T@\n' 2>/dev/null | sort)
  else
    printf 'repo %s %s' "$REPO" "$REF"
  fi | sha256sum | cut -c1-32
}
install_agent() {
  local dst=$PREFIX/comfy-multi src=$AGENT_SRC tmp=
  if [ -z "$src" ]; then
    tmp=$(mktemp -d)
    git clone --quiet --depth 1 --branch "$REF" "$REPO" "$tmp/src" || git clone --quiet "$REPO" "$tmp/src"
    git -C "$tmp/src" checkout --quiet "$REF"
    src=$tmp/src
  fi
  local npm node_dir
  node_dir=$(dirname "$NODE_BIN")
  npm=$node_dir/npm
  [ -x "$npm" ] || npm=$(command -v npm)
  export PATH="$node_dir:$PATH"
  if [ ! -f "$src/dist/cli/index.js" ] || [ ! -f "$src/src/admin/ui/dist/index.html" ]; then
    # Build it (--ignore-scripts: no node-gyp for better-sqlite3, which ships prebuilt binaries).
    (cd "$src" && "$npm" ci --ignore-scripts --no-audit --no-fund && "$npm" run build)
  fi
  rm -rf "$dst.new" && mkdir -p "$dst.new/src/admin/ui" "$dst.new/deploy"
  cp -a "$src/package.json" "$src/package-lock.json" "$src/bin" "$src/dist" "$dst.new/"
  cp -a "$src/src/admin/ui/dist" "$dst.new/src/admin/ui/"
  cp -a "$src/deploy/gpu/supervisor.mjs" "$src/deploy/gpu/extra_model_paths.yaml" "$dst.new/deploy/"
  (cd "$dst.new" && "$npm" ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  rm -rf "$dst.old" && { [ ! -d "$dst" ] || mv "$dst" "$dst.old"; } && mv "$dst.new" "$dst" && rm -rf "$dst.old"
  [ -z "$tmp" ] || rm -rf "$tmp"
  "$NODE_BIN" "$dst/bin/comfy-multi.js" --version >/dev/null || die "the installed agent does not start"
}

# ---- ComfyUI -----------------------------------------------------------------------------------------
install_comfyui() {
  local dir=$PREFIX/ComfyUI
  if [ ! -d "$dir/.git" ]; then
    rm -rf "$dir"
    git clone --quiet --filter=blob:none --no-checkout "$COMFYUI_REPO" "$dir"
  fi
  git -C "$dir" fetch --quiet origin "$COMFYUI_COMMIT" 2>/dev/null || git -C "$dir" fetch --quiet origin
  git -C "$dir" checkout --quiet --force "$COMFYUI_COMMIT"
  grep -qx "comfyui-frontend-package==$COMFYUI_FRONTEND_VERSION" "$dir/requirements.txt" ||
    die "ComfyUI $COMFYUI_COMMIT does not pin comfyui-frontend-package==$COMFYUI_FRONTEND_VERSION"
  # ComfyUI writes into its own folder (user/, output/, temp/, custom_nodes/).
  chown -R "$SERVICE_USER:" "$dir"
}
install_python() {
  [ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
  "$PREFIX/venv/bin/pip" install --quiet --upgrade pip
  # shellcheck disable=SC2086 # a list of requirement specifiers
  "$PREFIX/venv/bin/pip" install --quiet --index-url "$TORCH_INDEX_URL" $TORCH_PACKAGES
  "$PREFIX/venv/bin/pip" install --quiet -r "$PREFIX/ComfyUI/requirements.txt"
}
model_paths() {
  local dir=$PREFIX/ComfyUI src
  mkdir -p "$dir"
  src=$PREFIX/comfy-multi/deploy/extra_model_paths.yaml
  [ -f "$src" ] || src=${AGENT_SRC:-$PREFIX/comfy-multi}/deploy/gpu/extra_model_paths.yaml
  sed "s|^  base_path: .*|  base_path: $MODELS_DIR|" "$src" >"$dir/extra_model_paths.yaml"
}

# ---- models ------------------------------------------------------------------------------------------
fetch_list() {
  case "$MODELS_LIST" in
    http://* | https://* | file://*) curl -fsSL --retry 3 "$MODELS_LIST" ;;
    *) cat "$MODELS_LIST" ;;
  esac
}
# One model: kept when present with the right sha256 (a marker remembers a verified file's size and
# time, so a re-run does not hash gigabytes again); else downloaded to <file>.part, resumed from
# where it stopped, verified, then renamed.
fetch_model() {
  local rel=$1 sha=$2 url=$3 dest part marker stat auth=()
  dest=$MODELS_DIR/$rel
  part=$dest.part
  marker=$STATE/models/$(printf '%s' "$rel" | tr '/' '_').ok
  mkdir -p "$(dirname "$dest")" "$STATE/models"
  if [ -f "$dest" ]; then
    stat=$(stat -c '%s %Y' "$dest")
    if [ "$(cat "$marker" 2>/dev/null || true)" = "$sha $stat" ]; then return 0; fi
    if [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$sha" ]; then
      echo "$sha $stat" >"$marker"
      say "model present and verified: $rel"
      return 0
    fi
    say "model $rel has the wrong sha256; downloading it again"
    rm -f "$dest"
  fi
  case "$url" in https://huggingface.co/*) [ -z "${HF_TOKEN:-}" ] || auth=(-H "Authorization: Bearer $HF_TOKEN") ;; esac
  say "downloading $rel$([ -f "$part" ] && echo " (resuming at $(stat -c %s "$part") bytes)")"
  # Our own retries: each one resumes where the last stopped (curl's --retry would start over).
  local try=0 rc
  until [ -f "$part" ] && [ "$(sha256sum "$part" | cut -d' ' -f1)" = "$sha" ]; do
    try=$((try + 1))
    [ "$try" -le 6 ] || die "download of $rel failed; run the same command again to resume it"
    [ "$try" -eq 1 ] || { say "retrying $rel at $(stat -c %s "$part" 2>/dev/null || echo 0) bytes"; sleep $((try * 2)); }
    rc=0
    curl -fL --connect-timeout 30 -C - "${auth[@]}" -o "$part" "$url" || rc=$?
    if [ "$rc" -eq 0 ] && [ "$(sha256sum "$part" | cut -d' ' -f1)" != "$sha" ]; then
      rm -f "$part"
      die "$rel: the download does not match its sha256 (removed; check the models list)"
    fi
  done
  mv "$part" "$dest"
  echo "$sha $(stat -c '%s %Y' "$dest")" >"$marker"
}
install_models() {
  [ -n "$MODELS_LIST" ] || return 0
  local list line rel sha url n=0
  list=$(fetch_list) || die "cannot read the models list $MODELS_LIST"
  while IFS= read -r line; do
    line=${line%%#*}
    read -r rel sha url _ <<<"$line" || true
    [ -n "${rel:-}" ] || continue
    [[ $rel =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.+-]+)+$ ]] && [[ $rel != *..* ]] || die "models list: bad path '$rel'"
    [[ ${sha:-} =~ ^[0-9a-f]{64}$ ]] || die "models list: $rel needs a sha256 (64 hex digits)"
    [ -n "${url:-}" ] || die "models list: $rel has no URL"
    fetch_model "$rel" "$sha" "$url"
    n=$((n + 1))
  done <<<"$list"
  chown -R "$SERVICE_USER:" "$MODELS_DIR" 2>/dev/null || true
  say "models: $n in $MODELS_DIR"
}

# ---- services ---------------------------------------------------------------------------------------
write_config() {
  mkdir -p "$ETC_DIR" && chmod 0755 "$ETC_DIR"
  local env=$ETC_DIR/worker.env
  # ComfyUI's output folder: the agent reads outputs from it (faster than ComfyUI's /view while it
  # is busy). Made now, so the agent finds it even before ComfyUI's first start.
  local output_dir=$PREFIX/ComfyUI/output
  [ "$COMFYUI_STANDIN" != 1 ] || output_dir=$PREFIX/standin/output
  mkdir -p "$output_dir" && chown "$SERVICE_USER:" "$output_dir" 2>/dev/null || true
  (
    umask 077
    {
      echo "# comfy-multi worker settings (install.sh); the agent's options: comfy-multi worker --help"
      echo "COMFY_MULTI_SERVER=$SERVER"
      echo "COMFY_MULTI_TOKEN=$TOKEN"
      echo "WORKER_NAME=$NAME"
      echo "COMFYUI_URL=http://127.0.0.1:$COMFYUI_PORT"
      echo "COMFYUI_OUTPUT_DIR=$output_dir"
      grep -E '^(WORKER_PREFETCH|WORKER_GRACE_SECONDS|COMFYUI_ARGS|LOG_LEVEL)=' "$env" 2>/dev/null || true
    } >"$env.new"
  )
  mv "$env.new" "$env"
}
comfyui_exec() {
  if [ "$COMFYUI_STANDIN" = 1 ]; then
    echo "$NODE_BIN --import tsx $AGENT_SRC/test/support/comfyui-standin/main.ts --port $COMFYUI_PORT --dir $PREFIX/standin"
  else
    echo "$PREFIX/venv/bin/python main.py --listen 127.0.0.1 --port $COMFYUI_PORT --extra-model-paths-config $PREFIX/ComfyUI/extra_model_paths.yaml --disable-auto-launch \$COMFYUI_ARGS"
  fi
}
write_units() {
  mkdir -p "$SYSTEMD_DIR"
  local workdir=$PREFIX/ComfyUI
  [ "$COMFYUI_STANDIN" != 1 ] || workdir=$AGENT_SRC
  cat >"$SYSTEMD_DIR/comfyui.service" <<EOF
# Written by comfy-multi deploy/gpu/install.sh. ComfyUI on loopback; its only client is the agent.
[Unit]
Description=ComfyUI (comfy-multi GPU worker)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=$SERVICE_USER
WorkingDirectory=$workdir
EnvironmentFile=-$ETC_DIR/worker.env
ExecStart=$(comfyui_exec)
Restart=always
RestartSec=3
TimeoutStopSec=20
LimitNOFILE=65536
NoNewPrivileges=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
EOF
  cat >"$SYSTEMD_DIR/comfy-multi-worker.service" <<EOF
# Written by comfy-multi deploy/gpu/install.sh. Connects out to the control plane: no inbound port.
[Unit]
Description=comfy-multi worker agent
Wants=network-online.target comfyui.service
After=network-online.target comfyui.service

[Service]
Type=simple
User=$SERVICE_USER
EnvironmentFile=$ETC_DIR/worker.env
Environment=NODE_ENV=production
ExecStart=$NODE_BIN $PREFIX/comfy-multi/bin/comfy-multi.js worker
KillSignal=SIGTERM
TimeoutStopSec=90
Restart=always
RestartSec=3
LimitNOFILE=65536
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=yes

[Install]
WantedBy=multi-user.target
EOF
  chown -R "$SERVICE_USER:" "$PREFIX/ComfyUI" 2>/dev/null || true
}

write_config_and_units() {
  write_config
  write_units
}

supervisor_running() { [ -f "$PREFIX/supervisor.pid" ] && kill -0 "$(cat "$PREFIX/supervisor.pid")" 2>/dev/null; }

start_services() {
  if [ "$NO_START" = 1 ]; then
    say "not starting the services (--no-start)"
  elif [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --quiet comfyui.service comfy-multi-worker.service
    systemctl restart comfyui.service comfy-multi-worker.service
    say "services started: systemctl status comfyui comfy-multi-worker; journalctl -fu comfy-multi-worker"
  else
    # No systemd (a RunPod pod is a container): the image's supervisor keeps both running.
    local log=$PREFIX/supervisor.log line
    if supervisor_running; then
      kill -TERM "$(cat "$PREFIX/supervisor.pid")"
      for _ in $(seq 100); do supervisor_running || break; sleep 1; done
    fi
    (
      while IFS= read -r line; do
        [[ $line =~ ^[A-Z_][A-Z0-9_]*= ]] && export "${line?}"
      done <"$ETC_DIR/worker.env"
      export COMFYUI_DIR=$PREFIX/ComfyUI COMFYUI_PYTHON=$PREFIX/venv/bin/python COMFYUI_PORT=$COMFYUI_PORT \
        COMFY_MULTI_BIN=$PREFIX/comfy-multi/bin/comfy-multi.js
      if [ "$COMFYUI_STANDIN" = 1 ]; then
        COMFYUI_COMMAND="cd $AGENT_SRC && exec $(comfyui_exec)"
        export COMFYUI_COMMAND
      fi
      cd "$PREFIX"
      exec setsid nohup "$NODE_BIN" "$PREFIX/comfy-multi/deploy/supervisor.mjs" >>"$log" 2>&1 </dev/null
    ) &
    echo $! >"$PREFIX/supervisor.pid"
    say "no systemd here: ComfyUI and the agent run under $PREFIX/comfy-multi/deploy/supervisor.mjs (log $log)."
    say "Start them again after a restart with the same command (it skips what is done)."
  fi
}

# ---- run ------------------------------------------------------------------------------------------------
install_packages
service_user
step node "$NODE_VERSION" install_node find_node
find_node || die "no Node.js 24 found"
step agent "$(agent_key)" install_agent agent_present
if [ "$COMFYUI_STANDIN" != 1 ]; then
  step comfyui "$COMFYUI_COMMIT" install_comfyui comfyui_present
  step python "$COMFYUI_COMMIT $TORCH_INDEX_URL $TORCH_PACKAGES" install_python venv_present
fi
step model-paths "$MODELS_DIR" model_paths model_paths_present
models_key=$( (fetch_list 2>/dev/null || true) | sha256sum | cut -c1-32)
# The models step also checks the files are still there (a recreated instance may have lost them).
if [ "$(cat "$STATE/models.done" 2>/dev/null || true)" = "$models_key" ] && [ -n "$MODELS_LIST" ]; then
  while read -r rel sha _; do
    [ -f "$MODELS_DIR/$rel" ] || { rm -f "$STATE/models.done"; break; }
  done < <(fetch_list | sed 's/#.*//' | awk 'NF >= 3')
fi
step models "$models_key" install_models
config_key=$(printf '%s\n' "$SERVER" "$TOKEN" "$NAME" "$COMFYUI_PORT" "$SERVICE_USER" "$PREFIX" "$NODE_BIN" "$COMFYUI_STANDIN" | sha256sum | cut -c1-32)
step services "$config_key" write_config_and_units services_present
if [ "$did" -eq 0 ]; then
  say "nothing to do: everything is installed"
  # Without systemd nothing restarts the services after a reboot: this command does.
  if [ "$NO_START" != 1 ] && [ ! -d /run/systemd/system ] && ! supervisor_running; then start_services; fi
else
  start_services
  say "done ($did steps). The worker appears on the dashboard as $NAME once ComfyUI answers."
fi
