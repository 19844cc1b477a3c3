#!/usr/bin/env bash
# Restore a Tidings cluster from a scripts/backup.sh directory (docs/operations.md, "Restore").
# Every chat, api and push process must be stopped first: nothing may write meanwhile.
#
#   scripts/restore.sh DIR [postgres|schema|cassandra|kafka ...]
#
# With no part named, all four, in this order:
#   postgres   pg_restore DIR/postgres.dump into TIDINGS_POSTGRES_URL's database, which must
#              be new and empty (pg_restore stops at the first table that already exists).
#   schema     `tidings migrate`: the keyspace and its tables (empty), the Kafka topics if
#              they are gone; the restored PostgreSQL schema is already current (a no-op).
#   cassandra  `nodetool import --copy-data` of each table's files in DIR/cassandra/<table>/
#              into the keyspace on this node. Refuses a table that already holds data on
#              this node (but schema_migrations, which `tidings migrate` just filled): imported rows would merge with it (Cassandra keeps the newest
#              write of each cell), not replace it. Run it on each node with that node's
#              backup (the same token ranges).
#   kafka      the chat servers' consumer group (<prefix>.chat on <prefix>.inbox) and the
#              push workers' (<prefix>.push) set to the end of their topics: the events
#              already there are not replayed onto the restored inboxes (see the docs).
#
# Settings: as scripts/backup.sh, plus TIDINGS (the tidings command, default `tidings`)
# and every TIDINGS_* setting `tidings migrate` needs (as the servers have them).
set -euo pipefail

die() {
    echo "restore.sh: $*" >&2
    exit 1
}
say() { echo "[restore $(date -u +%H:%M:%S)] $*" >&2; }

[[ $# -ge 1 ]] || die "usage: $0 DIR [postgres|schema|cassandra|kafka ...]"
DIR=$1
shift
PARTS=("$@")
[[ ${#PARTS[@]} -gt 0 ]] || PARTS=(postgres schema cassandra kafka)
[[ -d $DIR ]] || die "no backup directory $DIR"

KEYSPACE=${TIDINGS_CASSANDRA_KEYSPACE:-tidings}
PREFIX=${TIDINGS_KAFKA_TOPIC_PREFIX:-tidings}
DATA_DIR=${CASSANDRA_DATA_DIR:-/var/lib/cassandra/data}
read -ra NODETOOL_CMD <<<"${NODETOOL:-nodetool}"
read -ra GROUPS_CMD <<<"${KAFKA_CONSUMER_GROUPS:-kafka-consumer-groups.sh}"
read -ra TIDINGS_CMD <<<"${TIDINGS:-tidings}"

libpq_url() { echo "${TIDINGS_POSTGRES_URL/postgresql+asyncpg:/postgresql:}"; }

restore_postgres() {
    [[ -n ${TIDINGS_POSTGRES_URL:-} ]] || die "TIDINGS_POSTGRES_URL is not set"
    [[ -f $DIR/postgres.dump ]] || die "no $DIR/postgres.dump"
    pg_restore --no-owner --exit-on-error --single-transaction \
        --dbname="$(libpq_url)" "$DIR/postgres.dump"
    say "postgres: restored $DIR/postgres.dump"
}

restore_schema() {
    "${TIDINGS_CMD[@]}" migrate >&2
    say "schema: tidings migrate done"
}

# table_has_data TABLE: true when this node holds sstables of the table (after a flush).
table_has_data() {
    compgen -G "$DATA_DIR/$KEYSPACE/$1-*/*-Data.db" >/dev/null
}

restore_cassandra() {
    [[ -d $DIR/cassandra ]] || die "no $DIR/cassandra"
    "${NODETOOL_CMD[@]}" flush "$KEYSPACE" >&2 ||
        die "keyspace $KEYSPACE is not there: run the schema part (tidings migrate) first"
    local src table count=0
    for src in "$DIR/cassandra"/*/; do
        table=$(basename "$src")
        # schema_migrations: just written by `tidings migrate`, the same versions.
        [[ $table == schema_migrations ]] || ! table_has_data "$table" ||
            die "$KEYSPACE.$table already holds data on this node: drop the keyspace first"
    done
    for src in "$DIR/cassandra"/*/; do
        table=$(basename "$src")
        compgen -G "$src*-Data.db" >/dev/null || continue # an empty table
        "${NODETOOL_CMD[@]}" import --copy-data "$KEYSPACE" "$table" "${src%/}" >&2
        count=$((count + 1))
    done
    say "cassandra: imported $count tables into $KEYSPACE"
}

restore_kafka() {
    [[ -n ${TIDINGS_KAFKA_BOOTSTRAP:-} ]] || die "TIDINGS_KAFKA_BOOTSTRAP is not set"
    local group topic
    for group in chat push; do
        topic=$PREFIX.$([[ $group == chat ]] && echo inbox || echo push)
        # Refused while the group has live members: the servers must be stopped.
        "${GROUPS_CMD[@]}" --bootstrap-server "$TIDINGS_KAFKA_BOOTSTRAP" --group "$PREFIX.$group" \
            --topic "$topic" --reset-offsets --to-latest --execute >&2
    done
    say "kafka: $PREFIX.chat and $PREFIX.push start at the end of their topics"
}

for part in "${PARTS[@]}"; do
    case $part in
        postgres) restore_postgres ;;
        schema) restore_schema ;;
        cassandra) restore_cassandra ;;
        kafka) restore_kafka ;;
        *) die "unknown part $part (postgres, schema, cassandra or kafka)" ;;
    esac
done
