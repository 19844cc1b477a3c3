#!/usr/bin/env bash
# Back up a Tidings cluster's stores into one directory (docs/operations.md, "Backup").
#
#   scripts/backup.sh DIR [postgres|cassandra|kafka ...]
#
# With no part named, all three, in this order:
#   cassandra  `nodetool snapshot` of the keyspace, its files copied to DIR/cassandra/<table>/
#              (with the snapshot's schema.cql and manifest.json), then the snapshot cleared.
#              Runs where nodetool and the node's data directory are: on each Cassandra node
#              of a multi-node cluster, each into its own DIR.
#   postgres   `pg_dump --format=custom` of the directory database to DIR/postgres.dump.
#              Taken after the Cassandra snapshot, so every user, device and channel that the
#              snapshot's messages and inboxes name is in the dump (ids are never reused).
#   kafka      the chat and push consumer groups' committed offsets (for the record: a
#              restore sets them to the end of the topics, it does not replay these).
#
# Settings, from the environment (the same TIDINGS_* as the servers):
#   TIDINGS_POSTGRES_URL             postgresql[+asyncpg]://user:password@host:port/db
#   TIDINGS_CASSANDRA_KEYSPACE       default tidings
#   TIDINGS_KAFKA_BOOTSTRAP, TIDINGS_KAFKA_TOPIC_PREFIX (default tidings)
#   NODETOOL                         the nodetool command (default `nodetool`)
#   CASSANDRA_DATA_DIR               the node's data_file_directories (default
#                                    /var/lib/cassandra/data)
#   KAFKA_CONSUMER_GROUPS            Kafka's consumer-groups tool (default
#                                    `kafka-consumer-groups.sh`)
# Commands given as strings are split on spaces.
set -euo pipefail

die() {
    echo "backup.sh: $*" >&2
    exit 1
}
say() { echo "[backup $(date -u +%H:%M:%S)] $*" >&2; }

[[ $# -ge 1 ]] || die "usage: $0 DIR [postgres|cassandra|kafka ...]"
DIR=$1
shift
PARTS=("$@")
[[ ${#PARTS[@]} -gt 0 ]] || PARTS=(cassandra postgres kafka)

KEYSPACE=${TIDINGS_CASSANDRA_KEYSPACE:-tidings}
PREFIX=${TIDINGS_KAFKA_TOPIC_PREFIX:-tidings}
DATA_DIR=${CASSANDRA_DATA_DIR:-/var/lib/cassandra/data}
read -ra NODETOOL_CMD <<<"${NODETOOL:-nodetool}"
read -ra GROUPS_CMD <<<"${KAFKA_CONSUMER_GROUPS:-kafka-consumer-groups.sh}"

# libpq takes postgresql://, not SQLAlchemy's postgresql+asyncpg://.
libpq_url() { echo "${TIDINGS_POSTGRES_URL/postgresql+asyncpg:/postgresql:}"; }

backup_cassandra() {
    local tag
    tag="tidings-backup-$(date -u +%Y%m%dT%H%M%SZ)"
    # snapshot flushes the memtables first: the files hold every write acknowledged so far.
    "${NODETOOL_CMD[@]}" snapshot -t "$tag" "$KEYSPACE" >&2
    local found=0 snap table
    for snap in "$DATA_DIR/$KEYSPACE"/*/snapshots/"$tag"; do
        [[ -d $snap ]] || continue
        table=$(basename "$(dirname "$(dirname "$snap")")")
        table=${table%-*} # <table>-<table id>
        mkdir -p "$DIR/cassandra/$table"
        cp -a "$snap"/. "$DIR/cassandra/$table/"
        found=$((found + 1))
    done
    "${NODETOOL_CMD[@]}" clearsnapshot -t "$tag" "$KEYSPACE" >&2
    ((found > 0)) || die "no snapshot of $KEYSPACE under $DATA_DIR (is CASSANDRA_DATA_DIR right?)"
    echo "$tag" >"$DIR/cassandra/TAG"
    say "cassandra: $found tables of $KEYSPACE in $DIR/cassandra"
}

backup_postgres() {
    [[ -n ${TIDINGS_POSTGRES_URL:-} ]] || die "TIDINGS_POSTGRES_URL is not set"
    pg_dump --format=custom --no-owner --file="$DIR/postgres.dump" "$(libpq_url)"
    say "postgres: $DIR/postgres.dump ($(stat -c %s "$DIR/postgres.dump") bytes)"
}

backup_kafka() {
    [[ -n ${TIDINGS_KAFKA_BOOTSTRAP:-} ]] || die "TIDINGS_KAFKA_BOOTSTRAP is not set"
    local group
    : >"$DIR/kafka-offsets.txt"
    for group in "$PREFIX.chat" "$PREFIX.push"; do
        "${GROUPS_CMD[@]}" --bootstrap-server "$TIDINGS_KAFKA_BOOTSTRAP" --describe \
            --offsets --group "$group" >>"$DIR/kafka-offsets.txt" 2>&1 || true
    done
    say "kafka: committed offsets in $DIR/kafka-offsets.txt"
}

mkdir -p "$DIR"
for part in "${PARTS[@]}"; do
    case $part in
        cassandra) backup_cassandra ;;
        postgres) backup_postgres ;;
        kafka) backup_kafka ;;
        *) die "unknown part $part (postgres, cassandra or kafka)" ;;
    esac
done
date -u +%FT%TZ >"$DIR/TAKEN_AT"
