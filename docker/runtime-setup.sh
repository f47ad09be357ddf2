#!/bin/sh
# Final-stage setup shared by docker/Dockerfile and docker/Dockerfile.cpu (and replayed by
# tests/docker/test_cpu_image_recipe.sh): installs the runtime libraries named in the list
# file $1 and creates the unprivileged user `basin` (uid/gid 10001) that owns the data volume.
#   runtime-setup.sh docker/runtime-packages.txt
set -eu
list=${1:?usage: runtime-setup.sh PACKAGE_LIST}
# Strip comments and blank lines: one package name per line.
pkgs=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
[ -n "$pkgs" ] || { echo "runtime-setup: no packages in $list" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086  # one word per package
apt-get install -y -q --no-install-recommends $pkgs
apt-get clean
rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so the same volume works with the GPU and the CPU image and a bind-mounted
# data directory or tokens file can be given to it on the host (chown/chgrp 10001).
groupadd --gid 10001 basin
useradd --uid 10001 --gid basin --home-dir /var/lib/basin --no-create-home \
  --shell /usr/sbin/nologin basin
install -d -o basin -g basin -m 0700 /var/lib/basin
