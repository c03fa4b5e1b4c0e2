#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (system packages included) and run
# the whole suite. CI (.ci/run) calls exactly this. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# rsyslog (+ its TLS driver): the forward job's real syslog sink; chromium: the web console tests;
# zlib1g-dev: zlib's crc32 for the hub's lz4 pull extension (src/sluice/hub/store/_lz4stitch.c).
apt-get install -y -qq --no-install-recommends python3-venv python3-pip rsyslog rsyslog-openssl chromium zlib1g-dev >/dev/null
source scripts/_venv.sh "[test]"
set +e
# Four workers, each test file on one worker (--dist loadfile keeps a file's module fixtures together); each
# worker has its own session hub on its own 127.0.0.x address. `-n 0` as an argument runs serially.
.venv/bin/python -m pytest -n 4 --dist loadfile "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
