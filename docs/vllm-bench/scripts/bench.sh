#!/bin/bash
# vllm bench serve and quantlab's capacity suite, taking turns on the GPU-bound server
# (big, :8010): vLLM A, quantlab 1, vLLM B, quantlab 2. Same workload: 256 prompt tokens
# from vLLM's RandomDataset, 128 output tokens (ignore_eos), greedy, 1/8/16/64 in flight,
# 24/48/96/384 requests per level (min 24, else 6 rounds of the level).
source "$(dirname "$0")/env.sh"
mkdir -p $O/bench && cd $O/bench
t0=$(date +%s)
python3 $S/gen_suite.py $BIG $O/bench/capacity-bench.json 2>&1 | grep -v -i warn | tail -2
COMMON="--backend openai-chat --endpoint /v1/chat/completions --base-url http://127.0.0.1:8010
 --model big --served-model-name big --tokenizer $BIG --dataset-name random --random-input-len 256
 --random-output-len 128 --random-range-ratio 0 --ignore-eos --temperature 0 --top-p 1
 --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,99 --save-result
 --result-dir $O/bench --disable-tqdm"
VB=$Q/docs/case-study/scripts/vbench.py
python3 $VB warm:16:64:99 -- $COMMON 2>&1 | grep -E "^(===|Output token|Median TTFT)" ; rm -f $O/bench/warm-*.json
ql() {
  python3 $S/bench_capacity.py run $O/bench/capacity-bench.json --endpoint big=http://127.0.0.1:8010 \
    --session $O/bench/quantlab-$1.json --fail-on never 2>&1 | tr '\r' '\n' | grep -v "^\[" | tail -4
  echo "quantlab $1 done at $(( $(date +%s) - t0 )) s"
}
python3 $VB a:1:24:1 a:8:48:2 a:16:96:3 a:64:384:4 -- $COMMON 2>&1 | grep -E "^(===|Output token|Median TTFT|Median TPOT)"
echo "vllm A done at $(( $(date +%s) - t0 )) s"
ql 1
python3 $VB b:1:24:11 b:8:48:12 b:16:96:13 b:64:384:14 -- $COMMON 2>&1 | grep -E "^(===|Output token|Median TTFT|Median TPOT)"
echo "vllm B done at $(( $(date +%s) - t0 )) s"
ql 2
python3 $Q/benchmarks/vllm_bench_compare.py --vllm $O/bench --session $O/bench/quantlab-1.json \
  --session $O/bench/quantlab-2.json --lane big --markdown | tee $O/bench/table.md
python3 $Q/benchmarks/vllm_bench_compare.py --vllm $O/bench --session $O/bench/quantlab-1.json \
  --session $O/bench/quantlab-2.json --lane big > $O/bench/compare.json
echo "bench done at $(( $(date +%s) - t0 )) s"
