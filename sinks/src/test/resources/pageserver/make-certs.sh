#!/usr/bin/env bash
# A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate (PEM).
# The README shows these same lines; PageServerTlsTest runs this file.
set -euo pipefail
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 30 -subj "/CN=pageflux test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
for who in server client; do
  openssl req $ec -keyout $who.key -out $who.csr -subj "/CN=pageflux-$who"
  [ $who = server ] && eku=serverAuth || eku=clientAuth
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=%s\n' $eku > $who.ext
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile $who.ext -out $who.pem
done
