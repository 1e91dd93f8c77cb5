#!/usr/bin/env bash
# Installs the MCP test fixtures used by the integration tests:
#   - tests/fixtures/node_modules  (npm ci from the committed package-lock.json:
#     @modelcontextprotocol/server-everything, server-memory, sdk, and the Claude Code
#     CLI @anthropic-ai/claude-code (node_modules/.bin/claude) — exact versions)
#   - tests/fixtures/.venv         (python3 venv with tests/fixtures/requirements.txt:
#     mcp==1.30.0 for fastmcp_server.py and py_client.py)
#
# Idempotent: each half is skipped when its stamp file (tests/fixtures/.installed-npm,
# tests/fixtures/.installed-py) matches the hash of its inputs. A no-op run takes
# under a second. Progress goes to stderr; stdout stays empty.
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
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
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
    [[ -x "$FIX/node_modules/.bin/claude" ]]; then
    log "npm fixtures up to date"
  else
    log "npm ci in tests/fixtures (node $(node --version), npm $(npm --version 2>/dev/null))..."
    rm -f "$stamp"
    (cd "$FIX" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
      die "npm ci failed in $FIX"
    for pkg in server-everything server-memory sdk; do
      [[ -f "$FIX/node_modules/@modelcontextprotocol/$pkg/package.json" ]] ||
        die "npm ci did not install @modelcontextprotocol/$pkg"
    done
    [[ -x "$FIX/node_modules/.bin/claude" ]] ||
      die "npm ci did not install @anthropic-ai/claude-code (node_modules/.bin/claude)"
    printf '%s\n' "$want" >"$stamp"
    log "npm fixtures installed"
  fi
fi

# ---- python venv -------------------------------------------------------------------------
if ((do_py)); then
  stamp="$FIX/.installed-py"
  venv="$FIX/.venv"
  vpy="$venv/bin/python"
  py_version="$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  want="$(fingerprint "$FIX/requirements.txt" "str:python-$py_version")"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if ((force == 0)) && [[ "$have" == "$want" ]] && [[ -x "$vpy" ]] &&
    "$vpy" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("mcp") is None)' 2>/dev/null; then
    log "python venv up to date"
  else
    rm -f "$stamp"
    if [[ -x "$vpy" ]] &&
      [[ "$("$vpy" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" != "$py_version" ]]; then
      log "python venv was made by another interpreter; recreating"
      rm -rf "$venv"
    fi
    if [[ ! -x "$vpy" ]]; then
      log "creating venv tests/fixtures/.venv ($("$PY" --version 2>&1))..."
      rm -rf "$venv"
      "$PY" -m venv "$venv" ||
        die "'$PY -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    log "pip install -r tests/fixtures/requirements.txt..."
    "$vpy" -m pip install --disable-pip-version-check --no-input -q -r "$FIX/requirements.txt" >&2 ||
      die "pip install failed (see above)"
    "$vpy" -c 'import mcp; from mcp.server.fastmcp import FastMCP; from mcp import ClientSession' ||
      die "the venv cannot import mcp / FastMCP after pip install"
    printf '%s\n' "$want" >"$stamp"
    log "python venv installed ($("$vpy" -m pip show mcp 2>/dev/null | sed -n 's/^Version: /mcp /p'))"
  fi
fi
