#!/usr/bin/env bash
# Prints the version that names a build: fleet-controller/fleetctl --version and the image tag.
# It always carries the commit, so that an image tag never names two different builds:
#   <last v* tag>-<commits since it>-g<short hash>[-dirty]   e.g. v0.1.0-3-gd867114-dirty
# (v0.0.0-0-g<hash> before the first tag). "-dirty" marks uncommitted changes to tracked files.
set -euo pipefail
cd "$(dirname "$0")/.."
if v=$(git describe --tags --long --dirty --match 'v[0-9]*' 2>/dev/null); then
  echo "${v}"
elif hash=$(git rev-parse --short HEAD 2>/dev/null); then
  dirty=""
  git diff --quiet HEAD -- 2>/dev/null || dirty="-dirty"
  echo "v0.0.0-0-g${hash}${dirty}"
else
  echo "v0.0.0-dev" # not a git checkout (a source tarball): no commit to name
fi
