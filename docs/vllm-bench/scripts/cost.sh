#!/bin/bash
# Third lease (2026-12-02): what top-k logprobs and teacher forcing cost on real vLLM
# (issue 11, logprobs_vllm.py), then the TUI's ui_lag benchmark on this GPU box's CPUs
# (issue 12: 3 lanes x 2000 tok/s of the stand-in, top-20 logprobs), servers idle.
source "$(dirname "$0")/env.sh"
mkdir -p $O/cost && cd $O/cost
t0=$(date +%s)
timeout 330 python3 $S/logprobs_vllm.py --endpoint big=http://127.0.0.1:8010 \
  --endpoint bf16=http://127.0.0.1:8000 --ref http://127.0.0.1:8000 --cand http://127.0.0.1:8001 \
  --repeats 3 > logprobs-cost.json 2> logprobs-cost.err
echo "logprobs cost rc=$? at $(( $(date +%s) - t0 )) s"; tail -c 400 logprobs-cost.json; tail -3 logprobs-cost.err
cd $Q
timeout 100 python3 benchmarks/ui_lag.py --lanes 3 --rate 2000 --seconds 20 > $O/cost/ui_lag-3x2000.json 2> $O/cost/ui_lag.err
echo "ui_lag rc=$? at $(( $(date +%s) - t0 )) s"; cat $O/cost/ui_lag-3x2000.json; tail -3 $O/cost/ui_lag.err
nproc > $O/cost/cpus.txt; lscpu | grep -i "model name" >> $O/cost/cpus.txt
