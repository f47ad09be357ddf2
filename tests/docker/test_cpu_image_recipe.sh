#!/usr/bin/env bash
# Proves docker/Dockerfile.cpu without a Docker engine, in clean Debian 12 roots.
#
#   bash tests/docker/test_cpu_image_recipe.sh BUILD_DIR       # runtime stage + container run
#   bash tests/docker/test_cpu_image_recipe.sh --build-stage   # build stage too (~5 min more)
#
# BUILD_DIR holds a CPU-only build (bin/basind, bin/basin), made with the command of the
# Dockerfile's build stage:
#   BASIN_BUILD_DIR=build-docker-cpu bash scripts/build.sh -DBASIN_WITH_CUDA=OFF -DBASIN_BUILD_TESTS=OFF
# With --build-stage the build stage itself is replayed in a clean root of its own
# (scripts/install-deps.sh with BASIN_WITH_TORCH=0, then scripts/build.sh, on a copy of the
# repository minus docker/Dockerfile.cpu.dockerignore), and its /src/build is BUILD_DIR.
#
# What it does, as `docker build` + `docker run` would:
#  1. Reads the stages of docker/Dockerfile.cpu (tests/docker/dockerfile_stage.py), so
#     the replay cannot drift from the Dockerfile: its package list, setup script, COPYs, ENV,
#     USER, WORKDIR, VOLUME, HEALTHCHECK and ENTRYPOINT are the ones executed here.
#  2. Base image debian:12-slim  ->  `debootstrap --variant=minbase bookworm` into an empty
#     directory, with the same apt sources as the image (bookworm, -updates, -security).
#  3. Replays every instruction in that root: RUN in a chroot (with /proc and /dev mounted),
#     COPY from the repository (context) or from BUILD_DIR (--from=build).
#     The root after the instructions before the first COPY of a directory or from another
#     stage is cached, like Docker's layer cache, under $BASIN_DEBOOTSTRAP_CACHE keyed by a
#     hash of the base, those instructions and the files they copy (runtime stage:
#     docker/runtime-packages.txt, runtime-setup.sh; build stage: scripts/install-deps.sh).
#  4. Runs the container: ENTRYPOINT + CMD with the image's ENV, as its USER (uid 10001), PID 1
#     of its own PID namespace, in its own network namespace (loopback only), with the tokens
#     file mounted where compose.yaml puts the secret (/run/secrets/basin_tokens, 0640 root:10001).
#  5. Requires: the HEALTHCHECK command and `basin health --server 127.0.0.1:50051` exit 0
#     (SERVING); `basin analyze --server` on examples/data returns JSON with the known answer;
#     no token -> refused; the metrics port answers; the server runs as uid 10001 and writes
#     its database into the VOLUME directory; a submitted job succeeds; the README's sqlite3
#     .backup works in the container; SIGTERM -> exit status 0 and "basind: stopped".
#  6. Starts a second container on the same VOLUME (an upgrade) with TLS from secrets: the
#     HEALTHCHECK passes over TLS, plaintext is refused, the job's result is still there and
#     identical, and analyze works with BASIN_TLS_CA.
#
# Needs root, debootstrap (installed with apt-get when missing), unshare, chroot, ip, curl,
# /usr/bin/python3, and the Debian mirror (only on a cold cache). Every network step has a
# timeout; a mirror that cannot be reached fails the test with a message saying so.
# Environment: BASIN_DEBOOTSTRAP_CACHE (default /var/cache/basin-debootstrap),
# BASIN_DEBIAN_MIRROR (default http://deb.debian.org/debian), BASIN_RECIPE_COLD=1 (ignore the
# cache), BASIN_RECIPE_CACHE_DAYS (default 7: older cached layers are rebuilt, so security
# updates get in), BASIN_RECIPE_RUN_TIMEOUT (default 1800 s per RUN), BASIN_RECIPE_KEEP=1
# (keep the roots and logs for debugging).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
DOCKERFILE=$REPO/docker/Dockerfile.cpu
# COPY --from=build paths: the build stage builds in /src/build (WORKDIR /src, BASIN_BUILD_DIR=build).
BUILD_STAGE_PREFIX=/src/build/
CACHE=${BASIN_DEBOOTSTRAP_CACHE:-/var/cache/basin-debootstrap}
MIRROR=${BASIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DAYS=${BASIN_RECIPE_CACHE_DAYS:-7}
PY=/usr/bin/python3
T0=$(date +%s.%N)

say() { printf '[recipe %6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
fail() { printf '[recipe] FAIL: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR | --build-stage" >&2; exit 2; }
if [ "$1" = --build-stage ]; then
  BUILD_DIR=""   # replay the build stage too; its /src/build becomes BUILD_DIR
else
  BUILD_DIR=$(cd "$1" && pwd) || fail "BUILD_DIR $1 does not exist"
  for b in basind basin; do
    [ -x "$BUILD_DIR/bin/$b" ] || fail "$BUILD_DIR/bin/$b is missing (build the CPU image's binaries first)"
  done
fi
RUN_TIMEOUT=${BASIN_RECIPE_RUN_TIMEOUT:-1800}
if [ "$(id -u)" -ne 0 ]; then
  echo "test_cpu_image_recipe: SKIPPED: needs root (debootstrap, chroot, namespaces)"
  exit 77  # ctest SKIP_RETURN_CODE
fi
for t in unshare chroot ip curl tar flock sha256sum bc timeout; do
  command -v "$t" >/dev/null || fail "needs $t"
done
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  timeout 300 apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
    { timeout 300 apt-get update -q >/dev/null &&
      timeout 300 apt-get install -y -q --no-install-recommends debootstrap >/dev/null; } ||
    fail "cannot install debootstrap with apt-get"
fi

# ---------------------------------------------------------------- the plan (the Dockerfile)
PLAN=()
split=0
load_plan() {  # load_plan STAGE: PLAN = that stage's instructions; split = end of the cached prefix
  local line first=() w=() i
  PLAN=()
  while IFS= read -r line; do PLAN+=("$line"); done < <("$PY" "$REPO/tests/docker/dockerfile_stage.py" "$DOCKERFILE" --stage "$1")
  [ ${#PLAN[@]} -gt 0 ] || fail "empty plan for stage $1"
  eval "first=(${PLAN[0]})"
  [ "${first[0]}" = FROM ] && [ "${first[1]}" = debian:12-slim ] ||
    fail "stage $1 is based on '${first[1]:-?}', this replay knows debian:12-slim (bookworm) only"
  # The prefix ends at the first COPY of something whose content the cache key does not hash
  # (--from another stage, or a directory such as the whole context); the rest is replayed
  # on every run.
  split=${#PLAN[@]}
  for i in "${!PLAN[@]}"; do
    eval "w=(${PLAN[$i]})"
    [ "${w[0]}" = COPY ] || continue
    if [ "${w[1]}" != - ]; then split=$i; break; fi
    for s in "${w[@]:4}"; do [ -f "$REPO/$s" ] || { split=$i; break 2; }; done
  done
}

# ---------------------------------------------------------------- scratch root and cleanup
WORK=$(mktemp -d /var/tmp/basin-recipe.XXXXXX)   # logs + the root file system
ROOT=$WORK/root
mkdir "$ROOT"
chmod 0755 "$WORK" "$ROOT"   # mktemp's 0700 would lock out every user but root (_apt, basin)
NETNS=basin-recipe-$$
SERVER_PID=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # The container's PID 1 first: killing it ends its whole PID namespace. (unshare's
    # --kill-child does not reach it: the credential change in chroot --userspec clears the
    # parent-death signal.)
    local child
    for child in $(cat /proc/"$SERVER_PID"/task/*/children 2>/dev/null); do
      kill -KILL "$child" 2>/dev/null
    done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  ip netns del "$NETNS" 2>/dev/null
  # Mounts are made in private mount namespaces and vanish with them; make sure of it before
  # deleting anything (never rm -rf through a bind mount of /dev).
  local m
  for m in $(awk -v r="$WORK" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m"
  done
  if [ "${BASIN_RECIPE_KEEP:-0}" = 1 ]; then
    echo "[recipe] root and logs kept in $WORK"
  elif ! awk -v r="$WORK" 'index($2, r) == 1 {found=1} END {exit !found}' /proc/mounts; then
    rm -rf --one-file-system "$WORK"
  else
    echo "[recipe] WARNING: $WORK still has mounts, not deleted" >&2
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- executing instructions
reset_state() {  # a new stage: FROM resets everything but the file system
  ENV_KV=()          # image ENV, in order
  ARG_KV=()          # ARGs in scope (RUN sees them as variables)
  USER_NAME=root
  WORKDIR=/
  HEALTHCHECK=()
  ENTRYPOINT=()
  CMD=()
  VOLUMES=()
  EXPOSED=()
}
reset_state

ids_of() {  # USER -> "uid gid home" from the root's /etc/passwd (Docker resolves it there too)
  awk -F: -v u="$1" '$1 == u || $3 == u {print $3, $4, $6; found=1; exit} END {exit !found}' \
    "$ROOT/etc/passwd" || fail "USER $1 does not exist in the image"
}

# root_cmd [--net NS] [--pid] [--user U] [--env K=V]... [--timeout S] [--resolv] -- CMD...
# Sets ROOT_CMD to a host command that runs CMD in the chroot as USER with the image's
# environment and WORKDIR, /proc and /dev (with /dev/pts, /dev/shm) mounted in a private mount namespace (they vanish
# with it), optionally in network namespace NS and as PID 1 of a new PID namespace.
root_cmd() {
  local net="" pid=0 user=$USER_NAME extra=() tmo="" resolv=0
  while [ "$1" != -- ]; do
    case $1 in
      --net) net=$2; shift 2 ;;
      --pid) pid=1; shift ;;
      --user) user=$2; shift 2 ;;
      --env) extra+=("$2"); shift 2 ;;
      --timeout) tmo=$2; shift 2 ;;
      --resolv) resolv=1; shift ;;
      *) fail "root_cmd: $1" ;;
    esac
  done
  shift
  local ids uid gid home
  ids=$(ids_of "$user") || exit 1
  read -r uid gid home <<<"$ids"
  ROOT_CMD=()
  [ -n "$tmo" ] && ROOT_CMD+=(timeout --kill-after=10 "$tmo")
  [ -n "$net" ] && ROOT_CMD+=(ip netns exec "$net")
  ROOT_CMD+=(unshare --mount --propagation private)
  [ "$pid" = 1 ] && ROOT_CMD+=(--pid --fork --kill-child)
  ROOT_CMD+=(-- /bin/sh -c '
      root=$1; resolv=$2; shift 2
      mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" || exit 125
      if [ "$resolv" = 1 ]; then
        # Like docker build: the host resolver during RUN, not kept in the image.
        [ -e "$root/etc/resolv.conf" ] || : > "$root/etc/resolv.conf"
        mount --bind /etc/resolv.conf "$root/etc/resolv.conf" || exit 125
      fi
      exec "$@"' sh "$ROOT" "$resolv"
    chroot --userspec="$uid:$gid" --groups="$gid" "$ROOT"
    /usr/bin/env -i -C "$WORKDIR"
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOSTNAME=basin-recipe
    HOME="$home" "${ARG_KV[@]}" "${ENV_KV[@]}" "${extra[@]}" "$@")
}

copy_context_dir() {  # copy_context_dir SRC_DIR DEST_DIR: COPY of a context directory,
  # leaving out what the Dockerfile's .dockerignore leaves out
  local ignore=$DOCKERFILE.dockerignore excl=() p
  if [ -f "$ignore" ]; then
    while IFS= read -r p; do
      p=${p%%#*}; p=${p%"${p##*[![:space:]]}"}
      [ -n "$p" ] || continue
      case $p in
        '**/'*) excl+=(--no-anchored --exclude="${p#'**/'}") ;;
        *) excl+=(--anchored --exclude="./$p") ;;
      esac
    done < "$ignore"
  fi
  mkdir -p "$2"
  tar -C "$1" "${excl[@]}" -cf - . | tar -C "$2" --no-same-owner -xf -
}

copy_in() {  # copy_in CHMOD DEST SRC... (Docker COPY semantics for files, directories and a trailing-/ dir)
  local chmod=$1 dest=$2; shift 2
  local target
  case $dest in
    /*) ;;
    .) dest=$WORKDIR/ ;;
    *) dest=${WORKDIR%/}/$dest ;;
  esac
  if [ $# -eq 1 ] && [ -d "$1" ]; then
    [ "$chmod" = - ] || fail "COPY --chmod of a directory is not replayed"
    copy_context_dir "$1" "$ROOT$dest"
    return
  fi
  if [[ $dest == */ ]] || [ $# -gt 1 ]; then
    [[ $dest == */ ]] || fail "COPY with several sources needs a destination ending in /"
    mkdir -p "$ROOT$dest"
  else
    mkdir -p "$(dirname "$ROOT$dest")"
  fi
  for src in "$@"; do
    [ -f "$src" ] || fail "COPY source $src is not a file"
    if [[ $dest == */ ]]; then target=$ROOT$dest$(basename "$src"); else target=$ROOT$dest; fi
    cp "$src" "$target"
    chown 0:0 "$target"
    [ "$chmod" = - ] || chmod "$chmod" "$target"
  done
}

run_step() {  # run_step INDEX
  local w
  eval "w=(${PLAN[$1]})"
  case ${w[0]} in
    FROM) ;;
    ARG) ARG_KV+=("${w[1]}=${w[2]}") ;;
    ENV) ENV_KV+=("${w[1]}=${w[2]}") ;;
    USER) USER_NAME=${w[1]} ;;
    WORKDIR) WORKDIR=${w[1]}; mkdir -p "$ROOT$WORKDIR" ;;
    VOLUME) VOLUMES+=("${w[@]:1}"); for d in "${w[@]:1}"; do mkdir -p "$ROOT$d"; done ;;
    EXPOSE) EXPOSED+=("${w[@]:1}") ;;
    HEALTHCHECK) HEALTHCHECK=("${w[@]:1}") ;;
    ENTRYPOINT) ENTRYPOINT=("${w[@]:1}") ;;
    CMD) CMD=("${w[@]:1}") ;;
    COPY)
      local from=${w[1]} chmod=${w[2]} dest=${w[3]} srcs=() s
      for s in "${w[@]:4}"; do
        if [ "$from" = - ]; then
          srcs+=("$REPO/$s")
        else
          [ "$from" = build ] || fail "COPY --from=$from: only the build stage maps to BUILD_DIR"
          [[ $s == "$BUILD_STAGE_PREFIX"* ]] || fail "COPY --from=build $s is outside $BUILD_STAGE_PREFIX"
          srcs+=("$BUILD_DIR/${s#"$BUILD_STAGE_PREFIX"}")
        fi
      done
      copy_in "$chmod" "$dest" "${srcs[@]}" ;;
    RUN)
      say "RUN ${w[1]}"
      # A hung download or build cannot block CI forever (BASIN_RECIPE_RUN_TIMEOUT, 30 min).
      root_cmd --timeout "$RUN_TIMEOUT" --resolv -- /bin/sh -c "${w[1]}"
      "${ROOT_CMD[@]}" || fail "RUN ${w[1]} failed (status $?)" ;;
    *) fail "unknown plan step ${w[0]}" ;;
  esac
}

# ---------------------------------------------------------------- base + cached prefix layer
mkdir -p "$CACHE"
base_key=$(printf 'recipe-base-v3 debootstrap minbase bookworm %s amd64 %s\n' "$MIRROR" \
  "$(dpkg-query -W -f='${Version}' debootstrap)" | sha256sum | cut -c1-16)
BASE_TAR=$CACHE/base-$base_key.tar
if [ "${BASIN_RECIPE_COLD:-0}" = 1 ]; then rm -f "$BASE_TAR"; fi
find "$CACHE" -maxdepth 1 -name '*.tar' -mtime +"$CACHE_DAYS" -delete

check_mirror() {
  timeout 20 curl -fsS -o /dev/null "$MIRROR/dists/bookworm/Release" ||
    fail "cannot reach the Debian mirror $MIRROR (set BASIN_DEBIAN_MIRROR, or run with a warm cache)"
}

make_base() {
  say "debootstrap --variant=minbase bookworm $MIRROR (cold cache)"
  timeout 900 debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; rm -f "$WORK/debootstrap.log"; fail "debootstrap failed or timed out (mirror $MIRROR)"; }
  rm -f "$WORK/debootstrap.log"
  # What debian:12-slim has: deb822 sources for bookworm, -updates and -security.
  rm -f "$ROOT/etc/apt/sources.list"
  cat > "$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${BASIN_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
  tar --numeric-owner -C "$ROOT" -cf "$BASE_TAR.$$" . && mv "$BASE_TAR.$$" "$BASE_TAR"
}

# build_root STAGE: ROOT = the stage's base + its cacheable prefix (from the cache or replayed),
# then the rest of the stage replayed. Sets CACHE_STATE (warm | base | cold) and T_ROOT.
build_root() {
  local stage=$1 i w=() s layer_key layer_tar t0
  load_plan "$stage"
  reset_state
  layer_key=$({
    echo "$base_key"
    for ((i = 0; i < split; i++)); do
      echo "${PLAN[$i]}"
      eval "w=(${PLAN[$i]})"
      if [ "${w[0]}" = COPY ]; then for s in "${w[@]:4}"; do sha256sum < "$REPO/$s"; done; fi
    done
  } | sha256sum | cut -c1-16)
  layer_tar=$CACHE/layer-$layer_key.tar
  if [ "${BASIN_RECIPE_COLD:-0}" = 1 ]; then rm -f "$layer_tar"; fi
  t0=$(date +%s)
  CACHE_STATE=warm   # warm: cached layer; base: layer rebuilt on the cached debootstrap; cold: debootstrap
  exec 9>"$CACHE/.lock"
  flock -w 3600 9 || fail "cache lock $CACHE/.lock held for an hour"
  if [ -f "$layer_tar" ]; then
    say "[$stage] cached layer $layer_tar (the stage's first $split instructions)"
    tar --numeric-owner -C "$ROOT" -xpf "$layer_tar"
    chmod 0755 "$ROOT"
    # Re-derive the state that the cached instructions set (ENV, WORKDIR, ...).
    for ((i = 0; i < split; i++)); do
      eval "w=(${PLAN[$i]})"
      case ${w[0]} in RUN|COPY) ;; *) run_step "$i" ;; esac
    done
  else
    check_mirror
    CACHE_STATE=base
    if [ -f "$BASE_TAR" ]; then
      say "[$stage] cached debootstrap base $BASE_TAR"
      tar --numeric-owner -C "$ROOT" -xpf "$BASE_TAR"
      chmod 0755 "$ROOT"
    else
      CACHE_STATE=cold
      make_base
    fi
    for ((i = 0; i < split; i++)); do run_step "$i"; done
    tar --numeric-owner -C "$ROOT" -cf "$layer_tar.$$" . && mv "$layer_tar.$$" "$layer_tar"
    # Keep the four newest layers (the build and runtime stages, and a previous package list).
    find "$CACHE" -maxdepth 1 -name 'layer-*.tar' -printf '%T@ %p\n' | sort -rn | tail -n +5 |
      cut -d' ' -f2- | xargs -r rm -f
  fi
  flock -u 9
  T_ROOT=$(($(date +%s) - t0))
  say "[$stage] root ready in ${T_ROOT}s ($CACHE_STATE); size $(du -sh --one-file-system "$ROOT" | cut -f1)"
  for ((i = split; i < ${#PLAN[@]}; i++)); do run_step "$i"; done
}

BUILD_CACHE_STATE=""
if [ -z "$BUILD_DIR" ]; then
  # ---- the build stage, in a clean root of its own: scripts/install-deps.sh + scripts/build.sh
  ROOT=$WORK/build-root
  mkdir "$ROOT"; chmod 0755 "$ROOT"
  T_BUILD0=$(date +%s)
  build_root build
  BUILD_CACHE_STATE=$CACHE_STATE
  BUILD_DIR=$ROOT${BUILD_STAGE_PREFIX%/}
  for b in basind basin; do
    [ -x "$BUILD_DIR/bin/$b" ] || fail "the build stage did not produce ${BUILD_STAGE_PREFIX}bin/$b"
  done
  T_BUILD=$(($(date +%s) - T_BUILD0))
  say "[build] stage replayed in ${T_BUILD}s ($BUILD_CACHE_STATE): $(ls "$BUILD_DIR/bin" | tr '\n' ' ')"
  ROOT=$WORK/root
fi

# ---- the runtime stage
build_root runtime

say "image replayed: USER=$USER_NAME WORKDIR=$WORKDIR VOLUME=${VOLUMES[*]} EXPOSE=${EXPOSED[*]} ENTRYPOINT=${ENTRYPOINT[*]} CMD=${CMD[*]:-} HEALTHCHECK=${HEALTHCHECK[*]}"
[ ${#ENTRYPOINT[@]} -gt 0 ] || fail "no ENTRYPOINT"
[ ${#HEALTHCHECK[@]} -gt 0 ] || fail "no HEALTHCHECK"
[ "$USER_NAME" != root ] && [ "$(ids_of "$USER_NAME" | cut -d' ' -f1)" != 0 ] || fail "the image runs as root"
printf '%s\n' "${EXPOSED[@]}" | grep -qx 50051 || fail "port 50051 not exposed"
printf '%s\n' "${EXPOSED[@]}" | grep -qx 9090 || fail "port 9090 not exposed"
printf '%s\n' "${VOLUMES[@]}" | grep -qx /var/lib/basin || fail "/var/lib/basin is not a VOLUME"

# ---------------------------------------------------------------- docker run
# Secrets as compose.yaml mounts them (/run/secrets/NAME), owned by root and readable by the
# image's group 10001 only: what docker/README.md tells the admin to do on the host.
secret() {  # secret NAME < content
  mkdir -p "$ROOT/run/secrets"
  cat > "$ROOT/run/secrets/$1"
  chown 0:10001 "$ROOT/run/secrets/$1"
  chmod 0640 "$ROOT/run/secrets/$1"
}
TOKEN=recipe-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '# token user\n%s alice\n' "$TOKEN" | secret basin_tokens
# The client's data, as with `docker compose cp`: examples/data, readable by everyone.
mkdir -p "$ROOT/tmp/examples"
cp "$REPO"/examples/data/regression_* "$ROOT/tmp/examples/"
chmod -R a+rX "$ROOT/tmp/examples"
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up

RUN_ENV=()
LOG=""
start_container() {  # start_container NAME [--env K=V]...: docker run -d, then wait for healthy
  local name=$1; shift
  RUN_ENV=("$@")
  LOG=$WORK/server-$name.log
  local t0; t0=$(date +%s.%N)
  root_cmd --net "$NETNS" --pid "${RUN_ENV[@]}" -- "${ENTRYPOINT[@]}" "${CMD[@]}"
  "${ROOT_CMD[@]}" > "$LOG" 2>&1 &
  SERVER_PID=$!   # ip netns exec -> unshare (exec); its one child is the container's PID 1
  # PID 1 is the forked child of unshare: after the entrypoint's exec it must be basind itself
  # (so `docker stop` signals the server, not a shell).
  PID1=""
  for _ in $(seq 100); do
    PID1=$(awk '{print $1}' "/proc/$SERVER_PID/task/$SERVER_PID/children" 2>/dev/null) || true
    [ -n "$PID1" ] && [ "$(cat "/proc/$PID1/comm" 2>/dev/null)" = basind ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG" >&2; fail "[$name] the container exited at once"; }
    sleep 0.1
  done
  [ "$(cat "/proc/$PID1/comm" 2>/dev/null)" = basind ] ||
    { cat "$LOG" >&2; fail "[$name] PID 1 of the container is not basind (the entrypoint must exec)"; }
  local uid; uid=$(awk '/^Uid:/ {print $2}' "/proc/$PID1/status")
  [ "$uid" = 10001 ] || fail "[$name] basind runs as uid $uid, expected 10001"
  say "[$name] basind is PID 1 of the container (host pid $PID1), uid $uid"
  # The HEALTHCHECK, as Docker runs it: in the container, as its user, with its ENV and its
  # --timeout=10s (here every second instead of every 30 s).
  local healthy=0
  for _ in $(seq 60); do
    root_cmd --net "$NETNS" --timeout 10 "${RUN_ENV[@]}" -- "${HEALTHCHECK[@]}"
    if "${ROOT_CMD[@]}" > "$WORK/health" 2>&1; then healthy=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG" >&2; fail "[$name] basind exited before it was healthy"; }
    sleep 1
  done
  [ $healthy = 1 ] || { cat "$WORK/health" "$LOG" >&2; fail "[$name] HEALTHCHECK (${HEALTHCHECK[*]}) never passed in 60 s"; }
  T_HEALTHY=$(echo "$(date +%s.%N) - $t0" | bc)
  say "[$name] HEALTHCHECK ${HEALTHCHECK[*]}: $(cat "$WORK/health") after ${T_HEALTHY}s"
}

stop_container() {  # docker stop: SIGTERM to PID 1; it must drain and exit 0 by itself
  local name=$1 t0 status
  t0=$(date +%s.%N)
  kill -TERM "$PID1"
  for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SERVER_PID" 2>/dev/null && fail "[$name] basind still running 30 s after SIGTERM"
  set +e; wait "$SERVER_PID"; status=$?; set -e
  SERVER_PID=""
  [ $status -eq 0 ] || { cat "$LOG" >&2; fail "[$name] basind exited with status $status after SIGTERM"; }
  grep -q 'basind: stopped' "$LOG" || { cat "$LOG" >&2; fail "[$name] no 'basind: stopped' in the log"; }
  say "[$name] SIGTERM: exit 0 in $(echo "$(date +%s.%N) - $t0" | bc)s; server log:"
  sed 's/^/    /' "$LOG"
}

client() {  # docker exec: in the container's network namespace, as its user, with its ENV
  root_cmd --net "$NETNS" --timeout 120 "${RUN_ENV[@]}" -- "$@"
  "${ROOT_CMD[@]}"
}

check_result() {  # check_result FILE: the README's numbers for examples/data/regression_*
  "$PY" - "$1" <<'EOF' || fail "the analysis result in $1 is wrong"
import json, sys
r = json.loads(open(sys.argv[1]).readline())
assert r["num_params"] == 337 and r["num_examples"] == 48, r
assert r["backend"] == "cpu", r["backend"]
j = r["jacobian"]
assert j["rank"] == 48 and j["level_set_dim"] == 289, j
assert len(r["hessian"]["eigenvalues"]) == 337
assert abs(r["ggn"]["eigenvalues"][0] - 8.843) < 1e-3, r["ggn"]["eigenvalues"][0]
print(f"JSON ok: N={r['num_params']}, rank {j['rank']}, level set {j['level_set_dim']}, "
      f"top GGN eigenvalue {r['ggn']['eigenvalues'][0]:.4g}, backend {r['backend']}")
EOF
}

D=/tmp/examples
REQUEST=(--model "$D/regression_model.json" --params "$D/regression_params.npy"
         --inputs "$D/regression_X.npy" --targets "$D/regression_Y.npy"
         --loss mse --want "jacobian,ggn,hessian")

# ---- run 1: as compose.yaml starts it (tokens secret, no TLS)
start_container plain --env BASIN_TOKENS_FILE=/run/secrets/basin_tokens --env BASIN_WORKERS=2 \
  --env BASIN_SHUTDOWN_TIMEOUT=10
T_HEALTHY1=$T_HEALTHY
out=$(client basin health --server 127.0.0.1:50051) || fail "basin health --server 127.0.0.1:50051: $out"
[ "$out" = SERVING ] || fail "basin health printed '$out'"
say "[plain] basin health --server 127.0.0.1:50051: $out (exit 0)"
if out=$(client basin analyze --server 127.0.0.1:50051 "${REQUEST[@]}" --json 2>&1); then
  fail "analyze without a token was accepted: $out"
fi
grep -q UNAUTHENTICATED <<<"$out" || fail "analyze without a token: expected UNAUTHENTICATED, got: $out"
say "[plain] without a token: refused (UNAUTHENTICATED)"
# One retry on a transport failure: under a parallel ctest load a first connect inside the
# namespace was once seen to fail with UNAVAILABLE (ENOENT from connect) right after the health
# check had succeeded. Any other failure, or a second one, fails the test.
if ! client basin analyze --server 127.0.0.1:50051 --token "$TOKEN" "${REQUEST[@]}" --json \
    > "$WORK/analyze.json" 2> "$WORK/client.err"; then
  grep -q UNAVAILABLE "$WORK/client.err" || { cat "$WORK/client.err" "$LOG" >&2; fail "basin analyze --server failed"; }
  say "[plain] analyze: transport error, retrying once: $(head -c 300 "$WORK/client.err")"
  sleep 1
  client basin analyze --server 127.0.0.1:50051 --token "$TOKEN" "${REQUEST[@]}" --json \
    > "$WORK/analyze.json" 2> "$WORK/client.err" ||
    { cat "$WORK/client.err" "$LOG" >&2; fail "basin analyze --server failed"; }
fi
say "[plain] basin analyze --server: $(check_result "$WORK/analyze.json")"
JOB=$(client basin submit --server 127.0.0.1:50051 --token "$TOKEN" "${REQUEST[@]}" 2> "$WORK/client.err") ||
  { cat "$WORK/client.err" >&2; fail "basin submit failed"; }
client basin watch "$JOB" --server 127.0.0.1:50051 --token "$TOKEN" > /dev/null 2> "$WORK/client.err" ||
  { cat "$WORK/client.err" >&2; fail "basin watch $JOB: the job did not succeed"; }
client basin result "$JOB" --server 127.0.0.1:50051 --token "$TOKEN" --json > "$WORK/job1.json" ||
  fail "basin result $JOB failed"
say "[plain] job $JOB succeeded: $(check_result "$WORK/job1.json")"
metrics=$(ip netns exec "$NETNS" curl -fsS --max-time 5 http://127.0.0.1:9090/metrics) ||
  fail "metrics endpoint 127.0.0.1:9090 did not answer"
grep -q '^basin_queue_depth ' <<<"$metrics" || fail "metrics: no basin_queue_depth"
say "[plain] metrics on :9090: $(grep -c '^basin_' <<<"$metrics") basin_* samples"
grep -q '2 worker(s)' "$LOG" || fail "BASIN_WORKERS=2 did not reach basind: $(cat "$LOG")"
grep -q 'bearer-token auth' "$LOG" || fail "basind did not enable token auth: $(cat "$LOG")"
[ -n "$(find "$ROOT/var/lib/basin" -mindepth 1 -maxdepth 1 -uid 10001)" ] ||
  fail "nothing written by uid 10001 in the VOLUME /var/lib/basin"
for f in basin.db basin.db-wal; do
  m=$(stat -c %a "$ROOT/var/lib/basin/$f") || fail "no $f in the VOLUME"
  [ "$m" = 600 ] || fail "/var/lib/basin/$f has mode $m, expected 600 (owner only: every user's jobs)"
done
m=$(stat -c %a "$ROOT/var/lib/basin") && [ "$m" = 700 ] || fail "/var/lib/basin has mode $m, expected 700"
say "[plain] VOLUME /var/lib/basin: $(find "$ROOT/var/lib/basin" -mindepth 1 -maxdepth 1 -printf '%f ')(owned by uid 10001)"
# docker/README.md's online backup, run in the container as its user.
client sqlite3 /var/lib/basin/basin.db ".backup /var/lib/basin/backup.db" ||
  fail "sqlite3 .backup in the container failed"
"$PY" - "$ROOT/var/lib/basin/backup.db" "$JOB" <<'EOF' || fail "the backup does not hold job $JOB"
import sqlite3, sys
n = sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM jobs WHERE id = ? AND result IS NOT NULL",
                                         (sys.argv[2],)).fetchone()[0]
assert n == 1, n
EOF
rm "$ROOT/var/lib/basin/backup.db"
say "[plain] sqlite3 .backup (README) in the container: the backup holds job $JOB and its result"
stop_container plain

# ---- run 2: a new container on the same VOLUME (what an upgrade does), now with TLS
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=basin-recipe \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$WORK/tls.key" -out "$WORK/tls.pem" 2> /dev/null || fail "openssl could not make a certificate"
secret basin_tls_cert < "$WORK/tls.pem"
secret basin_tls_key < "$WORK/tls.key"
start_container tls --env BASIN_TOKENS_FILE=/run/secrets/basin_tokens \
  --env BASIN_TLS_CERT=/run/secrets/basin_tls_cert --env BASIN_TLS_KEY=/run/secrets/basin_tls_key
grep -q 'with TLS' "$LOG" || fail "basind did not enable TLS: $(cat "$LOG")"
if out=$(client basin health --server 127.0.0.1:50051 2>&1); then fail "plaintext health check passed against a TLS server: $out"; fi
say "[tls] plaintext client: refused ($out)"
client basin result "$JOB" --server 127.0.0.1:50051 --token "$TOKEN" \
  --tls-ca /run/secrets/basin_tls_cert --json > "$WORK/job2.json" 2> "$WORK/client.err" ||
  { cat "$WORK/client.err" >&2; fail "basin result $JOB over TLS after the restart failed"; }
cmp -s "$WORK/job1.json" "$WORK/job2.json" || fail "job $JOB's result changed across the restart"
say "[tls] job $JOB's result is still there after the restart, identical, read over TLS"
# `basin analyze --server` takes its CA from BASIN_TLS_CA (the analyze flag parser is shared
# with --local).
root_cmd --net "$NETNS" --timeout 120 "${RUN_ENV[@]}" --env BASIN_TLS_CA=/run/secrets/basin_tls_cert -- \
  basin analyze --server 127.0.0.1:50051 --token "$TOKEN" "${REQUEST[@]}" --json
"${ROOT_CMD[@]}" > "$WORK/analyze-tls.json" 2> "$WORK/client.err" ||
  { cat "$WORK/client.err" >&2; fail "basin analyze over TLS (BASIN_TLS_CA) failed"; }
say "[tls] basin analyze --server with BASIN_TLS_CA: $(check_result "$WORK/analyze-tls.json")"
stop_container tls

say "PASS (${BUILD_CACHE_STATE:+build stage: $BUILD_CACHE_STATE cache, ${T_BUILD}s; }runtime stage: $CACHE_STATE cache, root ${T_ROOT}s; healthy after ${T_HEALTHY1}s)"
echo "1 passed, 0 failed"
