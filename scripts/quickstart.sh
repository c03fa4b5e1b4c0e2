#!/usr/bin/env bash
# Install sluice into .venv and run the quickstart: a hub on a free loopback port in a temporary data dir,
# a demo project and logstore, sample logs written and read back, then everything stopped.
source "$(dirname "$0")/_venv.sh" ""
exec .venv/bin/sluice quickstart "$@"
