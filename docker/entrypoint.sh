#!/bin/sh
# ENTRYPOINT of the Basin images (installed as /usr/local/bin/basin-entrypoint).
#
#   basin-entrypoint [basind flags...]   start basind; BASIN_* variables become flags, and flags
#                                        given here come after them (so they win)
#   basin-entrypoint healthcheck         exit 0 only when the local server answers SERVING
#                                        (the image's HEALTHCHECK)
#   basin-entrypoint selfcheck           every shared library resolves, both binaries start
#   basin-entrypoint CMD [ARGS...]       run another program (basin, sh, sqlite3, ...)
#
# Variables (unset or empty = flag not given):
#   BASIN_LISTEN          --listen            (image default 0.0.0.0:50051)
#   BASIN_DATA_DIR        --data-dir          (image default /var/lib/basin, the volume)
#   BASIN_TOKENS_FILE     --tokens            ('token user' per line; compose: /run/secrets/basin_tokens)
#   BASIN_TLS_CERT        --tls-cert
#   BASIN_TLS_KEY         --tls-key
#   BASIN_TLS_CLIENT_CA   --tls-client-ca     (mutual TLS)
#   BASIN_METRICS_LISTEN  --metrics-listen    (image default 0.0.0.0:9090)
#   BASIN_WORKERS         --workers
#   BASIN_SHUTDOWN_TIMEOUT --shutdown-timeout (keep below the container's stop grace period)
#   BASIN_DEVICE          --device            (auto|cpu|cuda)
#   BASIN_ALLOW_OPEN=1    start without a tokens file (anyone who reaches the port can use it)
# Health check only:
#   BASIN_HEALTHCHECK_SERVER   default 127.0.0.1:<port of BASIN_LISTEN>
#   BASIN_HEALTHCHECK_TLS_CA   CA for the server certificate (default BASIN_TLS_CERT itself,
#                              right for a self-signed certificate); the certificate must name
#                              the health-check address (e.g. subjectAltName IP:127.0.0.1)
#   BASIN_HEALTHCHECK_TLS_CERT, BASIN_HEALTHCHECK_TLS_KEY   client certificate under mutual TLS
set -eu

die() {
  echo "basin-entrypoint: $*" >&2
  exit 2
}

listen_port() {
  port=${BASIN_LISTEN:-0.0.0.0:50051}
  echo "${port##*:}"
}

healthcheck() {
  set -- --server "${BASIN_HEALTHCHECK_SERVER:-127.0.0.1:$(listen_port)}"
  if [ -n "${BASIN_TLS_CERT:-}" ]; then
    set -- "$@" --tls-ca "${BASIN_HEALTHCHECK_TLS_CA:-$BASIN_TLS_CERT}"
    if [ -n "${BASIN_TLS_CLIENT_CA:-}" ]; then
      [ -n "${BASIN_HEALTHCHECK_TLS_CERT:-}" ] && [ -n "${BASIN_HEALTHCHECK_TLS_KEY:-}" ] ||
        die "healthcheck: mutual TLS needs BASIN_HEALTHCHECK_TLS_CERT and BASIN_HEALTHCHECK_TLS_KEY"
      set -- "$@" --tls-cert "$BASIN_HEALTHCHECK_TLS_CERT" --tls-key "$BASIN_HEALTHCHECK_TLS_KEY"
    fi
  fi
  # Without TLS this is exactly: basin health --server 127.0.0.1:50051
  exec basin health "$@"
}

selfcheck() {
  libs="/usr/local/bin/basind /usr/local/bin/basin"
  # The GPU image also carries the CUDA backend module, opened on demand.
  [ ! -e /usr/local/bin/libbasin_cuda.so ] || libs="$libs /usr/local/bin/libbasin_cuda.so"
  # shellcheck disable=SC2086
  missing=$(ldd $libs | grep 'not found' || true)
  [ -z "$missing" ] || die "selfcheck: unresolved shared libraries:
$missing"
  basind --help >/dev/null
  basin --version
  echo "basin-entrypoint: selfcheck ok"
}

case "${1:-}" in
  healthcheck) healthcheck ;;
  selfcheck) selfcheck; exit 0 ;;
  '' | -*) ;;  # basind, with these flags
  *) exec "$@" ;;
esac

# basind flags from the environment, then the arguments (later flags override earlier ones).
flags_from_env() {
  [ -z "${BASIN_LISTEN:-}" ] || printf '%s\n' --listen "$BASIN_LISTEN"
  [ -z "${BASIN_DATA_DIR:-}" ] || printf '%s\n' --data-dir "$BASIN_DATA_DIR"
  [ -z "${BASIN_TOKENS_FILE:-}" ] || printf '%s\n' --tokens "$BASIN_TOKENS_FILE"
  [ -z "${BASIN_TLS_CERT:-}" ] || printf '%s\n' --tls-cert "$BASIN_TLS_CERT"
  [ -z "${BASIN_TLS_KEY:-}" ] || printf '%s\n' --tls-key "$BASIN_TLS_KEY"
  [ -z "${BASIN_TLS_CLIENT_CA:-}" ] || printf '%s\n' --tls-client-ca "$BASIN_TLS_CLIENT_CA"
  [ -z "${BASIN_METRICS_LISTEN:-}" ] || printf '%s\n' --metrics-listen "$BASIN_METRICS_LISTEN"
  [ -z "${BASIN_WORKERS:-}" ] || printf '%s\n' --workers "$BASIN_WORKERS"
  [ -z "${BASIN_SHUTDOWN_TIMEOUT:-}" ] || printf '%s\n' --shutdown-timeout "$BASIN_SHUTDOWN_TIMEOUT"
  [ -z "${BASIN_DEVICE:-}" ] || printf '%s\n' --device "$BASIN_DEVICE"
  return 0
}

has_tokens=0
[ -z "${BASIN_TOKENS_FILE:-}" ] || has_tokens=1
for a in "$@"; do [ "$a" != --tokens ] || has_tokens=1; done

if [ -n "${BASIN_TOKENS_FILE:-}" ] && [ ! -r "$BASIN_TOKENS_FILE" ]; then
  die "BASIN_TOKENS_FILE=$BASIN_TOKENS_FILE is missing or not readable by uid $(id -u)." \
    "On the host: chgrp 10001 FILE && chmod 0640 FILE (the image runs as basin, uid/gid 10001)."
fi
if [ "$has_tokens" = 0 ]; then
  [ "${BASIN_ALLOW_OPEN:-0}" = 1 ] ||
    die "no tokens file (BASIN_TOKENS_FILE or --tokens): refusing to serve without authentication." \
      "Set BASIN_ALLOW_OPEN=1 to run open (anyone who reaches the port can use it)."
  echo "basin-entrypoint: WARNING: running without authentication (BASIN_ALLOW_OPEN=1)" >&2
fi

# Positional parameters become: <flags from the environment> <arguments>. Values never contain
# newlines, so a newline-separated list is safe to split.
set -f
saved_ifs=$IFS
IFS='
'
# shellcheck disable=SC2046  # split on newlines only, no globbing (set -f)
set -- $(flags_from_env) "$@"
IFS=$saved_ifs
set +f
# exec: basind becomes PID 1 and receives `docker stop`'s SIGTERM itself (graceful drain).
exec basind "$@"
