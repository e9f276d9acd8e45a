#!/bin/sh
# Print the gateway's CA store as Kubernetes Secrets, one per folder the gateway reads (trust,
# intermediate, crl, server), for kubectl apply:
#
#   deploy/kubernetes/ca-store-secrets.sh certs | kubectl apply -f -
#
# CERTS_DIR is the store `ocpp-gateway ca ...` maintains on the CA machine (tls.certs_dir). The
# CA's own keys (CERTS_DIR/ca/) are never included: they stay on the CA machine. Needs kubectl, not
# a cluster (--dry-run=client). See README.md.
set -eu

usage="usage: ca-store-secrets.sh CERTS_DIR [NAMESPACE]"
certs_dir=${1:?$usage}
namespace=${2:-ocpp-gateway}

if [ ! -d "$certs_dir/trust" ]; then
    echo "error: $certs_dir/trust does not exist: is $certs_dir a CA store? (ocpp-gateway ca init)" >&2
    exit 2
fi
if ! ls "$certs_dir"/server/*.key >/dev/null 2>&1; then
    echo "error: no server chain in $certs_dir/server: run ocpp-gateway ca issue-server first" >&2
    exit 2
fi

for folder in trust intermediate crl server; do
    [ -d "$certs_dir/$folder" ] || continue
    echo "---"
    kubectl create secret generic "ocpp-gateway-ca-$folder" \
        --namespace "$namespace" \
        --from-file="$certs_dir/$folder/" \
        --dry-run=client --output yaml
done
