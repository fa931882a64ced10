"""What a stride-4 (P2) head costs against the P3 model of the same family: parameters, GFLOPs and CPU training-step
time, measured in one run, with the P2 / P3 ratios.

    python scripts/p2_cost.py                                   # yolo11n and yolo12n at imgsz 640, batch 8
    python scripts/p2_cost.py --models yolo11s --imgsz 960 --batch 4 --steps 3

A step is what the trainer does per batch: forward, Ultralytics' own detection loss (``model.loss``, the
TaskAlignedAssigner included), backward and an SGD step, on random images with 16 boxes of 4-64 px sides per image.
The two models' steps alternate (P3, P2, P3, P2, ...) so that a load change on the machine hits both alike; the time
is the median over ``--steps`` steps after one warm-up step each. Models are built from their yamls with ``--nc``
classes (10, VisDrone's); GFLOPs are Ultralytics' ``get_flops`` at ``--imgsz``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("YOLO_VERBOSE", "False")  # no model summaries; the table says it all

import torch  # noqa: E402
from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils.torch_utils import get_flops  # noqa: E402

from size_adaptive.cfg import model_yaml  # noqa: E402

BOXES_PER_IMAGE, SIDES_PX = 16, (4.0, 64.0)


def build(name: str, nc: int) -> DetectionModel:
    """A randomly initialised detection model of ``name`` (``yolo11n`` or ``yolo11n-p2``) in train mode."""
    model = DetectionModel(model_yaml(f"{name}.yaml"), nc=nc, verbose=False)
    model.args = get_cfg()  # the loss reads its gains (box, cls, dfl) here, as in training
    return model.train()


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def random_batch(batch: int, imgsz: int, nc: int, seed: int = 0) -> dict:
    """Images (batch, 3, imgsz, imgsz) in [0, 1] and ``BOXES_PER_IMAGE`` boxes per image, in Ultralytics' batch
    layout (``bboxes`` normalised xywh, ``cls`` (n, 1), ``batch_idx`` (n,))."""
    g = torch.Generator().manual_seed(seed)
    n = batch * BOXES_PER_IMAGE
    sides = torch.empty(n, 2).uniform_(*SIDES_PX, generator=g) / imgsz  # norm
    centres = sides / 2 + torch.rand(n, 2, generator=g) * (1 - sides)  # boxes inside the image
    return {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=g),
        "bboxes": torch.cat((centres, sides), 1),
        "cls": torch.randint(0, nc, (n, 1), generator=g).float(),
        "batch_idx": torch.arange(batch).repeat_interleave(BOXES_PER_IMAGE).float(),
    }


def step_seconds(model: DetectionModel, optimizer: torch.optim.Optimizer, batch: dict) -> float:
    """Wall time of one training step: forward, loss, backward, optimizer step."""
    t0 = time.perf_counter()
    optimizer.zero_grad()
    loss, _ = model.loss(batch)
    loss.sum().backward()
    optimizer.step()
    return time.perf_counter() - t0


def measure(p3: str, imgsz: int, batch: int, steps: int, nc: int) -> dict[str, dict[str, float]]:
    """{model name: {parameters, gflops, step_s}} for ``p3`` and its P2 model, steps alternating."""
    names = (p3, f"{p3}-p2")
    models = {n: build(n, nc) for n in names}
    optimizers = {n: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for n, m in models.items()}
    data = random_batch(batch, imgsz, nc)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(steps + 1):  # step 0 warms up each model
        for n in names:
            t = step_seconds(models[n], optimizers[n], data)
            if i:
                times[n].append(t)
    return {
        n: {"parameters": parameters(models[n]), "gflops": get_flops(models[n], imgsz),
            "step_s": statistics.median(times[n])}
        for n in names
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="yolo11n,yolo12n", help="P3 models whose P2 counterparts are measured")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model, after one warm-up step")
    parser.add_argument("--nc", type=int, default=10, help="number of classes (10: VisDrone)")
    a = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"imgsz {a.imgsz}, batch {a.batch}, {a.nc} classes, torch {torch.__version__} on CPU with "
          f"{torch.get_num_threads()} threads; step time: median of {a.steps} steps after 1 warm-up, alternating")
    print(f"{'model':<18}{'parameters':>12}{'GFLOPs':>9}{'step s':>9}")
    for p3 in a.models.split(","):
        r = measure(p3.strip().removesuffix(".yaml"), a.imgsz, a.batch, a.steps, a.nc)
        (n3, m3), (n2, m2) = r.items()
        for n, m in r.items():
            print(f"{n + '.yaml':<18}{m['parameters']:>12,}{m['gflops']:>9.1f}{m['step_s']:>9.2f}")
        ratios = [m2[k] / m3[k] for k in ("parameters", "gflops", "step_s")]
        print(f"{'P2 / P3':<18}{ratios[0]:>11.2f}x{ratios[1]:>8.2f}x{ratios[2]:>8.2f}x")


if __name__ == "__main__":
    main()
