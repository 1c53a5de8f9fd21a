#!/usr/bin/env bash
# The real-browser passkey test: starts a fresh Latchkey on http://localhost (browsers refuse
# an IP address as a WebAuthn RP ID), creates a user and a client with the CLI, and drives
# headless Chromium through passkey.mjs. Needs Node.js, Debian's chromium, and a built
# `latchkey` (LATCHKEY_BIN, default $CARGO_TARGET_DIR/debug/latchkey).
#
#   tests/browser/run.sh                       # installs playwright-core and axe-core with npm ci first
#   SCREENSHOTS=docs/screenshots tests/browser/run.sh   # also saves page screenshots
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
latchkey=${LATCHKEY_BIN:-$target/debug/latchkey}
port=${PORT:-18431}
base=http://localhost:$port
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# npm ci when the installed packages are missing or older than the lock file.
if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

cat >"$work/latchkey.toml" <<TOML
issuer = "$base"
listen = "127.0.0.1:$port"
data_dir = "$work/data"
TOML
lk() { LATCHKEY_LOG=warn "$latchkey" --config "$work/latchkey.toml" "$@"; }
if curl -fsS "$base/healthz" >/dev/null 2>&1; then
  echo "something already listens on $base; set PORT" >&2; exit 1
fi
email=browser-$$@example.com
password=browser-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$password" | lk user create --email "$email" --name "Browser Tester" --password-stdin --email-verified >/dev/null
redirect=https://rp.browser-test.invalid/callback
client=$(lk client create --name "Browser Test RP" --redirect-uri "$redirect")
client_id=$(printf '%s' "$client" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
client_secret=$(printf '%s' "$client" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')

LATCHKEY_LOG=${LATCHKEY_LOG:-warn} "$latchkey" --config "$work/latchkey.toml" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { cat "$work/server.log"; exit 1; }

# No administrator yet: the server printed the one-time setup link.
setup=$(grep -o "$base/signup?invite=[A-Za-z0-9_-]*" "$work/server.log" | head -n 1)
[ -n "$setup" ] || { echo "no setup link printed"; cat "$work/server.log"; exit 1; }

if ! SETUP_LINK=$setup BASE=$base EMAIL=$email PASSWORD=$password CLIENT_ID=$client_id CLIENT_SECRET=$client_secret \
  REDIRECT_URI=$redirect node "$here/passkey.mjs"; then
  echo "--- server log ---"; cat "$work/server.log"; exit 1
fi
