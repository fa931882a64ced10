#!/bin/sh
# GPU-server launcher for size-adaptive training.
#
#   sh train_loss_weighted.sh                          # demo data, YOLO12n, on whatever device is there
#   MODEL=yolo12s.yaml DATA=cfg/VisDrone.yaml EPOCHS=300 DEVICE=0 sh train_loss_weighted.sh
#   sh train_loss_weighted.sh DATA=cfg/VisDrone.yaml DEVICE=0,1 size_weights=3,2,1 cos_lr=True
#   sh train_loss_weighted.sh MODEL=yolo11n-obb.yaml   # segment, pose, OBB: the demo data of the model's task
#
# Settings come from environment variables or from NAME=value arguments (MODEL, DATA, EPOCHS, IMGSZ, BATCH, DEVICE);
# every other key=value argument (any `yolo train` key, the size_* keys) is passed through to `yolo-sa train`.
# DEVICE empty: Ultralytics picks the first GPU, else the CPU. DEVICE=0,1 trains with DDP on two GPUs.
set -eu

passthrough=""
for arg in "$@"; do
    case "$arg" in
        MODEL=*|DATA=*|EPOCHS=*|IMGSZ=*|BATCH=*|DEVICE=*) export "$arg" ;;
        *=*) passthrough="$passthrough $arg" ;;
        *) echo "train_loss_weighted.sh: expected NAME=value arguments, got '$arg'" >&2; exit 2 ;;
    esac
done

MODEL=${MODEL:-yolo12n.yaml}
case "$MODEL" in  # without DATA: the demo data of the model's task (Ultralytics' name suffixes)
    *-seg.*) demo=demo-seg ;;
    *-pose.*) demo=demo-pose ;;
    *-obb.*) demo=demo-obb ;;
    *) demo=demo ;;
esac
DATA=${DATA:-$demo}
recipe=""
case "$DATA" in demo|demo-seg|demo-pose|demo-obb) is_demo=1 ;; *) is_demo="" ;; esac
if [ -n "$is_demo" ]; then
    # A short schedule that learns on 64 images within minutes on a CPU: an optimizer step every batch (nbs=BATCH)
    # and one warm-up epoch. Override any of them with NAME=value or key=value arguments.
    EPOCHS=${EPOCHS:-40}
    IMGSZ=${IMGSZ:-256}
    recipe="warmup_epochs=1"
else
    EPOCHS=${EPOCHS:-300}
    IMGSZ=${IMGSZ:-640}
fi
BATCH=${BATCH:-16}
DEVICE=${DEVICE:-}
[ -z "$recipe" ] || recipe="nbs=$BATCH $recipe"
passthrough="$recipe$passthrough"   # later arguments win: the user's keys come after the recipe's

if command -v yolo-sa >/dev/null 2>&1; then
    set -- yolo-sa
else
    set -- "${PYTHON:-python3}" -m size_adaptive   # not installed as a command: run from this checkout
fi

echo "train_loss_weighted.sh: model=$MODEL data=$DATA epochs=$EPOCHS imgsz=$IMGSZ batch=$BATCH device=${DEVICE:-auto} $passthrough"
# shellcheck disable=SC2086  # passthrough is a list of key=value words
exec "$@" train model="$MODEL" data="$DATA" epochs="$EPOCHS" imgsz="$IMGSZ" batch="$BATCH" ${DEVICE:+device=$DEVICE} $passthrough
