#!/bin/sh
# A development CA and one server certificate for the control-service replicas, for `make run-ha`
# and envoy/docker-compose.postgres.yaml (never for production: use your own CA there, see
# docs/tls.md). Writes into DIR (created if missing) and keeps what is already there:
#   ca.pem        the CA Envoy trusts for its keygate_control cluster
#   control.pem   the replicas' certificate (SAN control.keygate.test, the name Envoy checks,
#                 and localhost, 127.0.0.1, control-1, control-2), signed by the CA
#   control.key   its private key (ca.key is deleted once it has signed: nothing else is issued)
# Needs the openssl command (1.1.1 or later). POSIX sh: it also runs in slim containers.
set -eu
dir=${1:?usage: scripts/dev-pki.sh DIR}
days=${KEYGATE_DEV_PKI_DAYS:-365}
mkdir -p "$dir"
if [ -s "$dir/ca.pem" ] && [ -s "$dir/control.pem" ] && [ -s "$dir/control.key" ]; then
  exit 0
fi
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=Keygate development CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=control.keygate.test" \
  -keyout "$dir/control.key" -out "$dir/control.csr" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:control.keygate.test,DNS:localhost,IP:127.0.0.1,DNS:control-1,DNS:control-2" \
  "basicConstraints=critical,CA:FALSE" "extendedKeyUsage=serverAuth" >"$dir/control.ext"
openssl x509 -req -in "$dir/control.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days "$days" -extfile "$dir/control.ext" -out "$dir/control.pem" 2>/dev/null
rm -f "$dir/ca.key" "$dir/control.csr" "$dir/control.ext" "$dir/ca.srl"
# The certificates are public; the key is its owner's alone. KEYGATE_DEV_PKI_KEY_OWNER (a uid,
# when run as root) hands the key to the user the replicas run as (10001 in the image).
chmod 644 "$dir/ca.pem" "$dir/control.pem"
chmod 600 "$dir/control.key"
if [ -n "${KEYGATE_DEV_PKI_KEY_OWNER:-}" ]; then
  chown "$KEYGATE_DEV_PKI_KEY_OWNER" "$dir/control.key"
fi
echo "dev-pki: wrote $dir/ca.pem, $dir/control.pem, $dir/control.key"
