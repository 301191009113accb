#!/bin/sh
# Makes the three-member demo federation of compose.yaml: each node's folder
# in its own volume, the founders' genesis roster signed by all three.
# Runs once; a federation already made is left as it is.
set -eu
base=/var/lib/maillon
if [ -f "$base/ccas-rodez/roster.json" ]; then
    echo "the demo federation exists already"
    exit 0
fi
init() { # id kind name
    maillon node init --dir "$base/$1/node" --member "$1" --kind "$2" --name "$3" \
        --peer-addr 0.0.0.0:7401 --peer-endpoint "$1:7401" --client-addr 0.0.0.0:7402
    # Metrics and /healthz on the compose network (the example binds loopback).
    sed -i '1i metrics_listen = "0.0.0.0:7403"' "$base/$1/node/node.toml"
}
init cd12 departement "Département de l'Aveyron"
init ccas-rodez ccas "CCAS de Rodez"
init caf12 caf "CAF de l'Aveyron"
work=$(mktemp -d)
maillon gov genesis --federation gip-demo --quorum 2/3 \
    --card "$base/cd12/node/card.json" \
    --card "$base/ccas-rodez/node/card.json" \
    --card "$base/caf12/node/card.json" \
    --out "$work/roster.json"
for id in cd12 ccas-rodez caf12; do
    maillon gov sign "$work/roster.json" --dir "$base/$id/node" --yes
done
for id in cd12 ccas-rodez caf12; do
    cp "$work/roster.json" "$base/$id/node/roster.json"
    # Each node's folder moves to its own volume's root: node.toml names no path.
    mv "$base/$id/node/"* "$base/$id/"
    rmdir "$base/$id/node"
done
echo "demo federation gip-demo made; admin profiles: $base/*/admin.profile.toml"
