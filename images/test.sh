#!/usr/bin/env bash
# What `make images-test` runs once the images are built: compose/docker-compose.yml up (its own project name),
# tests/images/ in real Chromium against it, then compose down whatever happened.
#
# Everything runs in a network namespace made for this test, with only a loopback interface: the compose file's
# host networking is then this namespace's, so nothing the desktops (Firefox included) or Chromium do can leave
# the machine, and the lobby's port 8080 cannot clash with anything running here. Needs root (rootful podman).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z ${IMPROMPTU_TEST_NETNS:-} ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "images/test.sh: run as root (rootful podman in a network namespace of its own)" >&2
        exit 1
    fi
    exec unshare --net env IMPROMPTU_TEST_NETNS=1 "$0" "$@"
fi
ip link set lo up

compose_file=compose/docker-compose.yml
compose="${PODMAN_COMPOSE:-podman-compose}"
project="impromptu-test-$$-$RANDOM"
export IMPROMPTU_IMAGES_TEST=1 IMPROMPTU_COMPOSE_PROJECT="$project"
# Host candidates on loopback only; a token of the test's own, as a user would set it.
export IMPROMPTU_ICE_ADDRESS=127.0.0.1 IMPROMPTU_TOKEN="test-token-$RANDOM"

down() {
    local status=$?
    echo "images/test.sh: compose down ($project)" >&2
    if ((status != 0)); then
        for container in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format "{{.Names}}"); do
            echo "--- podman logs $container (last 30 lines)" >&2
            podman logs --tail 30 "$container" >&2 || true
        done
    fi
    "$compose" -p "$project" -f "$compose_file" down -t 5 >/dev/null 2>&1 || true
    # Whatever compose down left (a failed `up` half way): this project's containers, pod and network.
    local label="label=io.podman.compose.project=$project"
    podman ps -aq --filter "$label" | xargs -r podman rm -f -t 3 >/dev/null 2>&1 || true
    podman pod rm -f "pod_$project" >/dev/null 2>&1 || true
    podman network ls -q --filter "$label" | xargs -r podman network rm -f >/dev/null 2>&1 || true
    exit "$status"
}
trap down EXIT
trap 'exit 130' INT TERM

"$compose" -p "$project" -f "$compose_file" up -d --no-build
.venv/bin/python -m pytest -q -p no:cacheprovider tests/images
