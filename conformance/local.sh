#!/usr/bin/env bash
# Runs the conformance runner against a Latchkey server running on this machine: creates a test
# user and the clients the plans need with the `latchkey` CLI (against the server's database),
# then runs every plan. Extra arguments go to the runner (e.g. --reuse-wait 5).
#
#   conformance/local.sh                      # a zero-config server: ./latchkey-data, :8080
#   LATCHKEY_DATA_DIR=/srv/lk ISSUER=http://localhost:9000 conformance/local.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
latchkey=${LATCHKEY_BIN:-$target/debug/latchkey}
runner=${CONFORMANCE_BIN:-$target/debug/latchkey-conformance}
issuer=${ISSUER:-http://localhost:8080}
rp=https://rp.conformance.invalid/callback
plr=https://rp.conformance.invalid/logged-out
user=conformance-$(date +%s)-$$@example.com
password=conformance-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

echo "$password" | "$latchkey" user create --email "$user" --name "Conformance Tester" \
  --password-stdin --email-verified >/dev/null
cred() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["client_id"]+":"+d["client_secret"])'; }
# The main client's ES256 key (for request objects): a private JWK for the runner, its public
# half registered as the client's jwks.
keys=$(mktemp -d)
trap 'rm -rf "$keys"' EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$keys/rp.pem"
openssl ec -in "$keys/rp.pem" -text -noout 2>/dev/null | python3 -c '
import base64, json, re, sys
text = sys.stdin.read()
def field(name):
    block = re.search(name + r":\s*\n((?:\s+[0-9a-f:]+\n)+)", text).group(1)
    return bytes.fromhex(re.sub(r"[^0-9a-f]", "", block))
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
d, pub = field("priv")[-32:], field("pub")
public = {"kty": "EC", "crv": "P-256", "x": b64(pub[1:33]), "y": b64(pub[33:65])}
json.dump(dict(public, d=b64(d)), open(sys.argv[1], "w"))
json.dump({"keys": [public]}, open(sys.argv[2], "w"))
' "$keys/rp-private.json" "$keys/rp-jwks.json"
main=$("$latchkey" client create --name "Conformance RP" --redirect-uri "$rp" \
  --post-logout-redirect-uri "$plr" --jwks-file "$keys/rp-jwks.json" | cred)
fapi() { "$latchkey" client create --name "$1" --redirect-uri "$rp" --profile fapi2 \
  --token-endpoint-auth-method private_key_jwt --jwks-file "$keys/rp-jwks.json" \
  --grant-type authorization_code --grant-type refresh_token \
  --scope openid --scope email --scope offline_access |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])'; }
fapi_client=$(fapi "Conformance FAPI 2.0 RP")
fapi_second=$(fapi "Conformance FAPI 2.0 RP (second)")
post=$("$latchkey" client create --name "Conformance RP (client_secret_post)" --redirect-uri "$rp" \
  --token-endpoint-auth-method client_secret_post | cred)
second=$("$latchkey" client create --name "Conformance RP (second)" --redirect-uri "$rp" | cred)
iat=$("$latchkey" registration-token create --expires-in 1h |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["initial_access_token"])')

# --flag=value: generated secrets may begin with "-".
"$runner" --issuer="$issuer" --username="$user" --password="$password" \
  --client="$main" --post-client="$post" --second-client="$second" \
  --redirect-uri="$rp" --post-logout-redirect-uri="$plr" --initial-access-token="$iat" \
  --client-jwk="$keys/rp-private.json" --fapi-client="$fapi_client" \
  --fapi-second-client="$fapi_second" --fapi-expiry-wait="${FAPI_EXPIRY_WAIT:-62}" \
  --backchannel-listen=127.0.0.1:0 "$@"
