#!/bin/sh
# Creates the platform's topics with their partitions and settings; safe to run again.
# Runs in the apache/kafka image: the compose service `kafka-topics` and the Kubernetes Job
# `wok-topics` both run this file. It follows `wok topics create` (wok_cli/commands/topics.py);
# tests/ops/test_topics_script.py holds the two to the same plan.
#
# Environment: BOOTSTRAP (host:port), TOPIC_PREFIX (the services' WOK_TOPIC_PREFIX),
# PARTITIONS (domain and exchange topics; partitions bound how many replicas of a
# consumer group share the work), REPLICATION_FACTOR, and COMMAND_CONFIG (optional: a
# client properties file, e.g. SASL/SCRAM credentials of the provisioning principal).
set -eu

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
TOPIC_PREFIX="${TOPIC_PREFIX:-}"
PARTITIONS="${PARTITIONS:-4}"
REPLICATION_FACTOR="${REPLICATION_FACTOR:-1}"
KAFKA_TOPICS="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"

create() {
    name="$1"
    partitions="$2"
    shift 2
    configs=""
    for config in "$@"; do
        configs="$configs --config $config"
    done
    # shellcheck disable=SC2086
    "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" ${COMMAND_CONFIG:+--command-config "$COMMAND_CONFIG"} \
        --create --if-not-exists --topic "$TOPIC_PREFIX$name" \
        --partitions "$partitions" --replication-factor "$REPLICATION_FACTOR" $configs
}

# Domain events: kept for good, reporting rebuilds its projections from them (no personal data).
create registration.events.v1 "$PARTITIONS" cleanup.policy=delete retention.ms=-1
create assessment.events.v1 "$PARTITIONS" cleanup.policy=delete retention.ms=-1
create notification.events.v1 "$PARTITIONS" cleanup.policy=delete retention.ms=-1
# Exchange between municipalities: activity digests for 90 days, aggregates compacted by scope.
create exchange.activity.v1 "$PARTITIONS" cleanup.policy=delete retention.ms=7776000000
create exchange.aggregates.v1 "$PARTITIONS" cleanup.policy=compact
# Peer suggestions and shared activity, addressed to one municipality each (no personal data).
create exchange.peers.v1 "$PARTITIONS" cleanup.policy=delete retention.ms=-1
# Dead letters keep rejected messages as they came, possibly with personal data a sender put
# there by mistake: 14 days to fix and redrive (`wok dlq redrive`), then they are deleted.
create dead-letter.assessment.v1 1 cleanup.policy=delete retention.ms=1209600000
create dead-letter.notification.v1 1 cleanup.policy=delete retention.ms=1209600000
create dead-letter.reporting.v1 1 cleanup.policy=delete retention.ms=1209600000
create dead-letter.exchange.v1 1 cleanup.policy=delete retention.ms=1209600000

"$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" ${COMMAND_CONFIG:+--command-config "$COMMAND_CONFIG"} --list
