#!/bin/sh
# Role dispatcher of the fedleak image (see docker-compose.yml). Every role reads its
# settings from the environment:
#   FEDLEAK_TLS=1            use the certificates in $FEDLEAK_CERTS_DIR (default /certs);
#                            otherwise every Flower connection is --insecure (loud warning)
#   FEDLEAK_SUPERLINK        SuperLink address host:port      (default superlink:8000)
#   FEDLEAK_PARTITION_ID     this SuperNode's partition        (supernode)
#   FEDLEAK_NUM_PARTITIONS   number of partitions = SuperNodes (supernode)
#   FEDLEAK_RAY_HEAD         Ray head GCS address host:port    (default ray-head:6379)
#   FEDLEAK_WORKER_SLOTS     attack workers this node hosts    (attack-worker, default 1)
#   FEDLEAK_WORKER_CPUS      CPUs those workers share          (attack-worker, default 1)
#   FEDLEAK_OBJECT_STORE_MB  Ray object store per node         (default 256)
set -eu

CERTS="${FEDLEAK_CERTS_DIR:-/certs}"
SUPERLINK="${FEDLEAK_SUPERLINK:-superlink:8000}"
RAY_HEAD="${FEDLEAK_RAY_HEAD:-ray-head:6379}"
STORE_BYTES=$(( ${FEDLEAK_OBJECT_STORE_MB:-256} * 1024 * 1024 ))

insecure_warning() {
    cat >&2 <<'WARN'
################################################################################
#  WARNING: INSECURE MODE. Flower traffic (model updates, run configs) travels  #
#  unencrypted and unauthenticated. For local use on one machine only.          #
#  Across machines use TLS: fedleak deploy up --tls (docker-compose.tls.yml).   #
################################################################################
WARN
}

tls_on() { [ "${FEDLEAK_TLS:-0}" = "1" ]; }

need_cert() {
    for f in "$@"; do
        if [ ! -r "$CERTS/$f" ]; then
            echo "fedleak-entrypoint: TLS is on but $CERTS/$f is missing or unreadable;" \
                 "run the certs service (docker-compose.tls.yml) or mount your own" >&2
            exit 2
        fi
    done
}

client_tls() {  # CLIENT_TLS: flags of a Flower component that connects to the SuperLink
    if tls_on; then
        need_cert ca.crt
        CLIENT_TLS="--root-certificates $CERTS/ca.crt"
    else
        insecure_warning
        CLIENT_TLS="--insecure"
    fi
}

join_ray_cluster() {  # this container becomes a Ray node without resources: a driver's node
    tries=0
    until ray start --address "$RAY_HEAD" --num-cpus 0 --num-gpus 0 --disable-usage-stats \
            --object-store-memory "$STORE_BYTES" >/tmp/ray-start.log 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -ge 30 ]; then
            cat /tmp/ray-start.log >&2
            echo "fedleak-entrypoint: cannot join the Ray head at $RAY_HEAD" >&2
            exit 3
        fi
        sleep 2
    done
}

role="${1:-help}"
[ $# -gt 0 ] && shift
case "$role" in
    superlink)
        if tls_on; then
            need_cert ca.crt server.crt server.key
            set -- --ssl-ca-certfile "$CERTS/ca.crt" --ssl-certfile "$CERTS/server.crt" \
                --ssl-keyfile "$CERTS/server.key" "$@"
        else
            insecure_warning
            set -- --insecure "$@"
        fi
        exec flower-superlink --host 0.0.0.0 --port 8000 --isolation process \
            --disable-runtime-dependency-installation "$@" ;;
    serverapp)
        client_tls
        # the ServerApp's attack pool is a Ray driver on this node (pool.address=RAY_HEAD):
        # steadier than a Ray Client connection through the head's proxy
        join_ray_cluster
        # shellcheck disable=SC2086
        exec flower-superexec --runtime-api-address "$SUPERLINK" $CLIENT_TLS "$@" ;;
    supernode)
        : "${FEDLEAK_PARTITION_ID:?set FEDLEAK_PARTITION_ID (0..N-1) for this SuperNode}"
        : "${FEDLEAK_NUM_PARTITIONS:?set FEDLEAK_NUM_PARTITIONS (N, the number of SuperNodes)}"
        client_tls
        # shellcheck disable=SC2086
        exec flower-supernode --superlink "$SUPERLINK" $CLIENT_TLS \
            --node-config "partition-id=$FEDLEAK_PARTITION_ID num-partitions=$FEDLEAK_NUM_PARTITIONS" \
            "$@" ;;
    ray-head)
        # no CPUs of its own: attack workers run only on attack-worker nodes (their slots)
        exec ray start --head --block --port 6379 --ray-client-server-port 10001 \
            --num-cpus 0 --num-gpus 0 --include-dashboard false --disable-usage-stats \
            --object-store-memory "$STORE_BYTES" "$@" ;;
    attack-worker)
        slots="${FEDLEAK_WORKER_SLOTS:-1}"
        exec ray start --block --address "$RAY_HEAD" --disable-usage-stats \
            --num-cpus "${FEDLEAK_WORKER_CPUS:-$slots}" \
            --resources "{\"fedleak_attack_worker\": $slots}" \
            --object-store-memory "$STORE_BYTES" "$@" ;;
    certs)
        exec python3 /opt/fedleak/docker/gen_certs.py "$CERTS" --uid "$(id -u app)" "$@" ;;
    help)
        echo "roles: superlink serverapp supernode ray-head attack-worker certs (or a command)"
        ;;
    *)
        exec "$role" "$@" ;;
esac
