#!/bin/sh
# What the official rabbitmq image does with RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS
# (a rabbitmq.conf), then the server. Debian's wrapper runs it as the rabbitmq user.
set -eu
conf=/etc/rabbitmq/rabbitmq.conf
{
  echo "loopback_users = none"
  [ -n "${RABBITMQ_DEFAULT_USER:-}" ] && echo "default_user = $RABBITMQ_DEFAULT_USER"
  [ -n "${RABBITMQ_DEFAULT_PASS:-}" ] && echo "default_pass = $RABBITMQ_DEFAULT_PASS"
  true
} > "$conf"
chown rabbitmq:rabbitmq "$conf" && chmod 0600 "$conf"
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
exec "$@"
