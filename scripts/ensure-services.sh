#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and RabbitMQ answer on loopback: starts them when they are
# installed but stopped, installs them from Debian's packages when they are missing.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "ensure-services: $name did not come up on port $port" >&2
  return 1
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# PostgreSQL
if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432 PostgreSQL
fi
# Tests connect as postgres without a password over TCP (trust auth on loopback).
psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null

# PgBouncer: only its binary (the pooler tests start their own on a free port).
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
# pgBackRest: only its binary (the point-in-time drill archives a private cluster's WAL).
command -v pgbackrest >/dev/null || apt_install pgbackrest
# nginx: TLS in front of the moto server that holds the drill's pgBackRest repository.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
# Prometheus: only its binary (tests/integration/services/test_prometheus_scrape.py starts its
# own server on a free port to scrape a distributed layout).
command -v prometheus >/dev/null || apt_install --no-install-recommends prometheus

# Redis
if ! port_open 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 Redis
fi

# RabbitMQ
if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  rabbitmq-server -detached
  wait_port 5672 RabbitMQ
fi
echo "ensure-services: PostgreSQL, Redis and RabbitMQ are up"
