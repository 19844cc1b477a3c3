#!/usr/bin/env bash
# A private CA for the test engines' TLS listeners (Kafka's SSL listener, Cassandra's
# client encryption), made once into $TESTENV_STATE/tls/ with openssl:
#
#   ca.crt                the CA certificate (what clients trust: TIDINGS_TEST_TLS_CA_FILE)
#   server.crt/.key       the engines' certificate, signed by the CA; SANs 127.0.0.1,
#                         localhost and the pod bridge's address (pods connect there)
#   server.pem            server.key then server.crt: the PEM "keystore" Kafka and
#                         Cassandra read
#   client.crt/.key       a client certificate signed by the CA (mutual TLS tests)
#
# The CA's private key stays in ca.key; nothing outside this script reads it.
#
#   tls-ca.sh             make the files when they are missing (safe to run at once from
#                         kafka.sh and cassandra.sh: a lock serialises them)
#
# Sourced, it defines TESTENV_TLS and tls_ca_make.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TESTENV_TLS="$TESTENV_STATE/tls"

# _tls_sign <name> <subject> <extensions>: a 2048-bit RSA key and a certificate for it,
# signed by the CA, valid for two years (PKCS#8 keys: Kafka's PEM keystore needs them).
_tls_sign() {
    local name=$1 subject=$2 extensions=$3 dir=$TESTENV_TLS
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$name.key" 2>/dev/null
    openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr"
    printf '%s\n' "$extensions" >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 730 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

_tls_make() {
    local dir=$TESTENV_TLS
    [[ -f $dir/.complete ]] && return 0
    command -v openssl >/dev/null || die "openssl not found (needed for the test CA)"
    log "making a private CA and certificates in $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 700 "$dir"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=tidings-test-ca" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt"
    _tls_sign server "/CN=tidings-test-engines" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$POD_GATEWAY_IP"
    _tls_sign client "/CN=tidings-test-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    cat "$dir/server.key" "$dir/server.crt" >"$dir/server.pem"
    chmod 600 "$dir"/*.key "$dir/server.pem"
    touch "$dir/.complete"
}

# tls_ca_make: the files above, made once (under a lock: kafka.sh and cassandra.sh start
# in parallel).
tls_ca_make() {
    mkdir -p "$TESTENV_STATE"
    (
        flock 9
        _tls_make
    ) 9>"$TESTENV_STATE/.tls.lock"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    tls_ca_make
fi
