#!/usr/bin/env bash
# Renders a run's report.html with headless Chromium and saves a PNG screenshot.
#
# Usage: scripts/screenshot_report.sh RUN_DIR OUT.png [WIDTHxHEIGHT]
#
# RUN_DIR holds report.html (write it first: `transferkit report RUN_DIR`).
# The window defaults to 1200x2400; the page is self-contained, so no
# network is needed. Set CHROMIUM to use another binary (chromium-browser,
# google-chrome).
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 RUN_DIR OUT.png [WIDTHxHEIGHT]" >&2
    exit 2
fi
run_dir=$1
out=$2
size=${3:-1200x2400}
report="$run_dir/report.html"
if [[ ! -f "$report" ]]; then
    echo "$0: no $report; write it first with: transferkit report $run_dir" >&2
    exit 2
fi
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [[ -z "$browser" ]]; then
    echo "$0: no Chromium found; install it (apt-get install chromium) or set CHROMIUM" >&2
    exit 2
fi
url="file://$(realpath "$report")"
out_abs="$(realpath -m "$out")"
# A throw-away profile, so that a running browser's profile is never touched.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --disable-gpu --no-sandbox --hide-scrollbars \
    --user-data-dir="$profile" --window-size="${size/x/,}" \
    --screenshot="$out_abs" "$url" >/dev/null 2>&1
if [[ ! -s "$out_abs" ]]; then
    echo "$0: $browser wrote no screenshot" >&2
    exit 1
fi
echo "$out_abs"
