#!/bin/bash
# Conformance recordings of the three lanes, then vllm bench serve and quantlab's capacity
# suite on the BF16 lane with the same workload (~256 prompt tokens, 128 output tokens,
# ignore_eos): vLLM, quantlab, vLLM again (how far vLLM is from itself).
source "$(dirname "$0")/env.sh"
cd $O
t0=$(date +%s)
python3 $G/record_vllm.py --out $O/rec --quantlab $LANES 2>&1 | tee $O/record.log
echo "recorded in $(( $(date +%s) - t0 )) s"
mkdir -p $O/bench
# Distinct seeds: no prompt repeats between runs, so no prefix-cache hits.
COMMON="--backend openai-chat --endpoint /v1/chat/completions --base-url http://127.0.0.1:$P
 --model $M --served-model-name bf16 --tokenizer $M --dataset-name random --random-input-len 256
 --random-output-len 128 --ignore-eos --percentile-metrics ttft,tpot,itl,e2el
 --metric-percentiles 50,99 --save-result --result-dir $O/bench --disable-tqdm"
python3 $G/vbench.py warm:64:64:99 a:1:8:1 a:8:32:2 a:16:64:3 a:64:256:4 -- $COMMON 2>&1 \
  | grep -v -i "warn" | tee $O/bench/vllm-a.log
rm -f $O/bench/warm-*.json
echo "vllm bench A done at $(( $(date +%s) - t0 )) s"
python3 $G/bench_capacity.py run $G/capacity-bench.json --endpoint bf16=http://127.0.0.1:$P \
  --session $O/bench/quantlab-capacity.json 2>&1 | tr '\r' '\n' | grep -v "^\[" | tee $O/bench/quantlab.log
echo "quantlab capacity done at $(( $(date +%s) - t0 )) s"
python3 $G/vbench.py b:1:8:11 b:8:32:12 b:16:64:13 b:64:256:14 -- $COMMON 2>&1 \
  | grep -v -i "warn" | tee $O/bench/vllm-b.log
echo "vllm bench B done at $(( $(date +%s) - t0 )) s"
python3 $G/vllm_bench_compare.py --vllm $O/bench --session $O/bench/quantlab-capacity.json \
  --lane bf16 --markdown 2>&1 | tee $O/bench/table.md
