#!/bin/bash
# Here: gather what the GPU machine needs into DEST (an ignored folder of the checkout the
# device tool sends, e.g. /work/main/.gpu): these scripts, the recorder, the comparison, and
# the vllm-device tool (setup.sh, env.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../../.." && pwd)
dest=${1:?usage: assemble.sh DEST}
mkdir -p "$dest/tool"
cp -r "$here"/*.sh "$here"/*.py "$here"/*.json "$here/suites" "$dest/"
cp "$repo/tests/data/record_vllm.py" "$repo/benchmarks/vllm_bench_compare.py" "$dest/"
cp /work/shared/tools/vllm-device/setup.sh /work/shared/tools/vllm-device/env.sh "$dest/tool/"
du -sh "$dest"
