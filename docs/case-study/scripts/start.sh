#!/bin/bash
# Start the three vLLM lanes so that they outlive this call (setsid nohup), then wait until
# all answer /health (at most HEALTH_TIMEOUT s in this call; run again to keep waiting).
# With UP_ARGS set in up_args.sh (a `quantlab up` that takes N servers): one `quantlab up`
# command; otherwise, or if that command dies, three `vllm serve` started side by side.
source "$(dirname "$0")/env.sh"
COMMON="--max-model-len 8192 --enforce-eager"
[ -f $G/up_args.sh ] && source $G/up_args.sh

direct() {
  echo "three vllm serve side by side ($1)" | tee -a $O/launch.txt
  i=0; : > $O/direct.pids
  for lane in "bf16:" "fp8:--quantization fp8" "fp8kv:--quantization fp8 --kv-cache-dtype fp8"; do
    name=${lane%%:*}; extra=${lane#*:}; port=$((P+i)); i=$((i+1))
    cmd="vllm serve $M --host 127.0.0.1 --port $port --served-model-name $name --gpu-memory-utilization 0.20 $COMMON $extra"
    echo "$cmd" | tee -a $O/launch.txt
    setsid nohup $cmd > $O/$name.log 2>&1 < /dev/null &
    echo $! >> $O/direct.pids
  done
}

if [ ! -f $O/launched ]; then
  date +%s > $O/launched
  if [ -n "${UP_ARGS:-}" ]; then
    echo "quantlab up $UP_ARGS" | tee $O/launch.txt
    (cd $O && exec setsid nohup python3 -m quantlab up $UP_ARGS > $O/up.log 2>&1 < /dev/null) &
    echo $! > $O/up.pid
  else
    direct "quantlab up could not take three servers"
  fi
fi
t_launch=$(cat $O/launched); t0=$(date +%s)
for p in $P $((P+1)) $((P+2)); do
  until python3 -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)" http://127.0.0.1:$p/health 2>/dev/null; do
    if [ -f $O/up.pid ] && ! kill -0 $(cat $O/up.pid) 2>/dev/null; then
      echo "quantlab up exited; its log:"; tail -n 25 $O/up.log
      rm -f $O/up.pid; direct "quantlab up exited: see up.log"
    fi
    if [ $(( $(date +%s) - t0 )) -gt ${HEALTH_TIMEOUT:-420} ]; then
      echo "port $p not healthy yet ($(( $(date +%s) - t_launch )) s since launch); log tails:"
      tail -n 12 $O/*.log $O/sessions/logs/*.log 2>/dev/null; exit 3
    fi
    sleep 2
  done
  echo "port $p healthy $(( $(date +%s) - t_launch )) s after launch"
done
echo "all healthy $(( $(date +%s) - t_launch )) s after launch" | tee -a $O/launch.txt
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv | tee $O/nvidia-smi.txt
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv | tee -a $O/nvidia-smi.txt
