#!/bin/bash
# The case study: every built-in suite on the three lanes into one session (capacity taken
# to 64 in flight by a user suite of the same name), then the Pilot screenshots.
source "$(dirname "$0")/env.sh"
cd $O
t0=$(date +%s)
QUANTLAB_SUITES=$G/suites python3 -m quantlab run sanity distribution long-context concurrency capacity \
  $EPS --session $O/case-study.json 2>&1 | tr '\r' '\n' | grep -v "^\[" | tee $O/suites.log
echo "suites done in $(( $(date +%s) - t0 )) s"
timeout 240 python3 $G/shots.py $O/shots ${LANES} 2>&1 | tail -n 20
echo "shots done at $(( $(date +%s) - t0 )) s"
