#!/bin/bash
# The lesion benchmark's configuration sweep: every configuration x training seed as its own process, all in
# parallel (meant for a machine with many cores and a GPU), then one DIR/summary.json per configuration and the
# side-by-side table (bench/lesion_seeds_table.py).
#
#   CACHE=base512.npz WORK=runs/sweep bash bench/lesion_sweep.sh
#
# Env: CACHE  decoded images + lung fields (`cxrkit bench lesions --base-cache`; made on first use from
#             ../shared/data when IMAGES is set or the shared data is found), WORK  output folder (one sub-folder
#             per configuration), SEEDS  training seeds (default "0 1 2"), NAMES  configurations to run (default
#             all), EXTRA  extra bench arguments for every run, LIMIT  seconds per run (default 7200), PY  python.
set -u
CACHE=${CACHE:?set CACHE to a --base-cache .npz path}
WORK=${WORK:?set WORK to an output folder}
SEEDS=${SEEDS:-"0 1 2"}
EXTRA=${EXTRA:-}
LIMIT=${LIMIT:-7200}
PY=${PY:-python3}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
declare -A CONFIGS=(
  [base]="--cam-flips none"                       # single view (the shipped model's layout)
  [hv_eval]="--cam-flips-eval-only"               # trained on single views, mirrored maps averaged at evaluation
  [hv]=""                                         # the default: mirrored maps averaged in training and evaluation
  [hv_dil]="--dilate"                             # + dilated layer4 (receptive field of the stride-16 layout)
  [hv_s4]="--cam-stride 4 --dilate"               # + class-map stride 4 (layer3 undecimated), dilated
)
NAMES=${NAMES:-"base hv_eval hv hv_dil hv_s4"}
mkdir -p "$WORK"
if [ ! -f "$CACHE" ]; then  # make the cache once, not in every parallel run
  $PY -m cxrkit.cli.main bench lesions --base-cache "$CACHE" --out "$WORK/_cache_probe" --metadata none --epochs 1 --repeats 1 --batch-size 4 \
    --input-size 64 --quiet ${IMAGES:+--images "$IMAGES"} > "$WORK/cache.log" 2>&1 || { cat "$WORK/cache.log"; exit 1; }
fi
start=$(date +%s)
for name in $NAMES; do
  for s in $SEEDS; do
    timeout "$LIMIT" $PY -m cxrkit.cli.main bench lesions --base-cache "$CACHE" --metadata none --out "$WORK/$name" \
      --seeds "$s" --workers 2 --threads 1 --quiet ${CONFIGS[$name]} $EXTRA > "$WORK/$name.seed$s.log" 2>&1 &
  done
done
wait
echo "runs done after $(( $(date +%s) - start )) s"
table=()
for name in $NAMES; do
  echo "=== $name: ${CONFIGS[$name]:-(defaults)}"
  $PY -m cxrkit.cli.main bench lesions --metadata none --out "$WORK/$name" --seeds $SEEDS --quiet \
    ${CONFIGS[$name]} $EXTRA --summarize-only || grep -h -i -A3 "error\|Traceback" "$WORK/$name".seed*.log | head -20
  [ -f "$WORK/$name/summary.json" ] && table+=("$name=$WORK/$name")
done
[ ${#table[@]} -gt 0 ] && $PY "$(dirname "$0")/lesion_seeds_table.py" "${table[@]}" --validation
echo "total $(( $(date +%s) - start )) s"
