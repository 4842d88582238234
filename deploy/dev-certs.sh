#!/usr/bin/env bash
# Makes a development certificate authority and certificates for a Loom mesh, with the openssl
# command line (EC P-256 keys, valid 825 days). For development and tests only: the CA key sits
# beside the certificates.
#
#   deploy/dev-certs.sh DIR [DEVICE[:PROVIDER] ...]
#
# In DIR it makes (keeping any that already exist):
#   ca.crt ca.key                      the CA (--tls_ca / --tls_client_ca everywhere)
#   coordinator.crt coordinator.key    CN=loom-coordinator, OU=coordinator; DNS localhost, IP 127.0.0.1
#   client.crt client.key              CN=client, OU=client (for the loom CLI under mutual TLS)
#   DEVICE.crt DEVICE.key              CN=DEVICE, OU=device, O=PROVIDER (default: DEVICE), DNS DEVICE
#                                      (the coordinator dials workers expecting that name)
# A worker's certificate decides its device id and the provider account it is paid into: the
# coordinator refuses a Register that names anything else.
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
command -v openssl >/dev/null || { echo "dev-certs: openssl is missing (apt-get install openssl)" >&2; exit 1; }
DIR="$1"
shift
mkdir -p "$DIR"
umask 077

valid_id() { [[ "$1" =~ ^[A-Za-z0-9._-]{1,128}$ ]]; }

if [ ! -s "$DIR/ca.crt" ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$DIR/ca.key" -out "$DIR/ca.crt" -days 825 -subj "/O=loom-dev/CN=Loom development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi

# leaf NAME ROLE ORG SAN...
leaf() {
  local name="$1" role="$2" org="$3"
  shift 3
  [ -s "$DIR/$name.crt" ] && return 0
  local san
  san=$(IFS=,; echo "$*")
  local ext
  ext=$(mktemp)
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' \
    "$san" >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$DIR/$name.key" -out "$DIR/$name.csr" -subj "/O=$org/OU=$role/CN=$name" 2>/dev/null
  openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -out "$DIR/$name.crt" -days 825 -extfile "$ext" 2>/dev/null
  rm -f "$DIR/$name.csr" "$ext"
}

leaf coordinator coordinator loom DNS:loom-coordinator DNS:localhost IP:127.0.0.1
leaf client client loom DNS:client
for spec in "$@"; do
  device="${spec%%:*}"
  provider="$device"
  [[ "$spec" == *:* ]] && provider="${spec#*:}"
  if ! valid_id "$device" || ! valid_id "$provider" || [ "$device" = coordinator ] ||
     [ "$device" = client ] || [ "$device" = ca ]; then
    echo "dev-certs: '$spec': ids are 1-128 characters of A-Z a-z 0-9 . _ - (and not ca, client or coordinator)" >&2
    exit 2
  fi
  leaf "$device" device "$provider" "DNS:$device"
done
echo "dev-certs: CA and certificates in $DIR"
