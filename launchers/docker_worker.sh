#!/bin/sh
# Container entry point of the docker-compose workers: `docker_worker.sh gpu|cpu`.
# The launchpad file is written from $FIREGEN_MONGO_URI into /run/firegen, a tmpfs, so the
# database password lives only in the environment and in memory, never on a disk.
set -eu
kind="${1:?usage: docker_worker.sh gpu|cpu}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p /run/firegen
firegen db launchpad -o /run/firegen/my_launchpad.yaml
exec rlaunch -l /run/firegen/my_launchpad.yaml -w "$here/${kind}_worker.yaml" \
    rapidfire --nlaunches infinite --sleep "${FIREGEN_WORKER_SLEEP:-2}"
