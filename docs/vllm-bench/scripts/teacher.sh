#!/bin/bash
# Issue 11 on real vLLM: teacher-forced agreement through quantlab's own commands (ask, a
# suite run, the reports), then what logprobs and teacher forcing cost (logprobs_vllm.py).
source "$(dirname "$0")/env.sh"
mkdir -p $O/tf && cd $O/tf
t0=$(date +%s)
EPS="--endpoint bf16=http://127.0.0.1:8000 --endpoint fp8=http://127.0.0.1:8001"
python3 -m quantlab ask $EPS --json --no-save "Explain in three sentences why the sky is blue." > ask.json 2> ask.err
python3 -m quantlab ask $EPS --no-save "List five prime numbers greater than 100." > ask.txt 2>&1
python3 -m quantlab run sanity distribution $EPS --session $O/tf/tf-session.json --fail-on never 2>&1 \
  | tr '\r' '\n' | grep -v "^\[" | tail -5
python3 -m quantlab report $O/tf/tf-session.json --format md -o $O/tf/failure-modes.md
python3 -m quantlab report $O/tf/tf-session.json --format brief -o $O/tf/risk-brief.md
python3 -m quantlab report $O/tf/tf-session.json --format json -o $O/tf/report.json
echo "quantlab commands done at $(( $(date +%s) - t0 )) s"
python3 $S/logprobs_vllm.py --endpoint big=http://127.0.0.1:8010 --endpoint bf16=http://127.0.0.1:8000 \
  --ref http://127.0.0.1:8000 --cand http://127.0.0.1:8001 --repeats 4 > $O/tf/logprobs-cost.json 2> $O/tf/logprobs-cost.err
tail -c 600 $O/tf/logprobs-cost.json; tail -3 $O/tf/logprobs-cost.err
echo "cost done at $(( $(date +%s) - t0 )) s"
