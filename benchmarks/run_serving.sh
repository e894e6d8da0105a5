#!/usr/bin/env bash
# Run the three serving benchmarks with their default data (../shared/data) and write JSON to
# benchmarks/results/. Not part of CI: expect tens of minutes on a small machine.
#
#   benchmarks/run_serving.sh              # all three
#   benchmarks/run_serving.sh encode       # one suite: encode | ingest | ag-news
#
# HASHPLUG=/path/to/hashplug and ROWS=... (ingest row count, default 1,000,000) can be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."
HASHPLUG="${HASHPLUG:-hashplug}"
OUT=benchmarks/results
mkdir -p "$OUT"
suites=("${@:-encode ingest ag-news}")
for suite in ${suites[@]}; do
  case "$suite" in
    encode)  "$HASHPLUG" bench encode --out "$OUT/encode.json" ;;
    ingest)  "$HASHPLUG" bench ingest --rows "${ROWS:-1000000}" --out "$OUT/ingest.json" ;;
    ag-news) "$HASHPLUG" bench ag-news --out "$OUT/ag_news.json" ;;
    *) echo "unknown suite $suite (encode | ingest | ag-news)" >&2; exit 2 ;;
  esac
done
