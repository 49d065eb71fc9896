#!/usr/bin/env bash
# The parking forecast against "same as now" on the real Málaga car-park series
# (../shared/data/parking/malaga, 14 car parks, a year at ~15 minutes). Usage:
#   bench/parking_forecast.sh [OCCUPANCY.csv.gz] [--per-lot]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/parking/malaga/malaga_carparks_occupancy.csv.gz}"
shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/citybrain-target}"
cargo build --release --workspace -q
zcat "$data" | "$CARGO_TARGET_DIR/release/citybrain" parking forecast-eval - "$@"
