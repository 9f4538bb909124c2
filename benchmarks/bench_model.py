"""Model benchmark: CPU forward latency, parameter counts (LoRA vs full fine-tuning), peak memory vs voxel size.

    python benchmarks/bench_model.py [--quick]

- Latency: `EnhancedTransformerDecoderOnly3D` in the benchmark's config `BENCH` (LoRA attention, 3D projection
  with keypoints, 4 layers, R=16: larger than the training recipe's defaults, 2 layers and R=8), eval mode
  under `torch.inference_mode()`, `torch.set_num_threads(1)`, batch 1 and 64, d_model 128 (dlib) and 512
  (ArcFace). Per sample: the median and 10th percentile of the wall time of single calls, and the thread
  CPU time per call (`time.thread_time`: not counting time the OS gave to other processes). On a shared VM the speed of a core also depends on other tenants, so
  repeated runs differ by up to ~30%; compare numbers from one run.
- Parameters: total, trainable after `freeze_base()` (the LoRA adapter) and LoRA, for rank 4 / 8 / 16,
  against full fine-tuning (every parameter trainable, the model's default).
- Peak memory: the peak of live tensor bytes during one call, from the torch profiler's allocation and
  free events (`profile_memory=True`, replayed in time order): what the call allocates on top of the
  weights and inputs (training: forward + backward, gradients included), not the process RSS.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without PYTHONPATH

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from viewdiff.models.checkpoint import find_weights, load_pretrained  # noqa: E402
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D  # noqa: E402
from viewdiff.paths import REPO_ROOT  # noqa: E402

SHIPPED_EMBEDDER = "28db0b514695b5c8"   # the default face pack's fingerprint

MiB = 2 ** 20

BENCH = dict(num_layers=4, voxel_resolution=16)   # the config the README's speed, size and memory figures are of


def inputs(batch: int, d_model: int, keypoints: bool = True, seed: int = 0,
           map_shape: tuple[int, int] | None = None) -> dict[str, torch.Tensor | None]:
    """Forward kwargs: unit embeddings (and their mirror), random source poses, frontal target, keypoints (or None);
    map_shape (channels, side): also the photo's and the mirror's feature maps, for a model that reads them."""
    g = torch.Generator().manual_seed(seed)
    x = {"src": torch.nn.functional.normalize(torch.randn(batch, d_model, generator=g), dim=-1),
         "src_mirror": torch.nn.functional.normalize(torch.randn(batch, d_model, generator=g), dim=-1),
         "angles": (torch.rand(batch, 3, generator=g) * 2 - 1) * torch.tensor([90.0, 30.0, 20.0]),
         "keypoints_3d": torch.randn(batch, 5, 3, generator=g) * 0.4 if keypoints else None,
         "pose": torch.zeros(batch, 3)}
    if map_shape:
        channels, side = map_shape
        x |= {k: torch.randn(batch, channels, side, side, generator=g) for k in ("feature_map", "feature_map_mirror")}
    return x


def latency(model: torch.nn.Module, batch: int, d_model: int, seconds: float,
            keypoints: bool = True) -> tuple[float, float, float]:
    """(median wall ms, 10th-percentile wall ms, mean thread-CPU ms) per call, after a warm-up, for ~`seconds`."""
    settings = getattr(model, "settings", None)
    maps = (settings.map_channels, settings.map_size) if getattr(settings, "map_channels", 0) else None
    x = inputs(batch, d_model, keypoints, map_shape=maps)
    walls, calls = [], 0
    with torch.inference_mode():
        warm_until = time.perf_counter() + min(1.0, seconds / 4)
        while time.perf_counter() < warm_until:
            model(**x)
        cpu0, start = time.thread_time(), time.perf_counter()
        while calls < 10 or time.perf_counter() - start < seconds:
            t = time.perf_counter()
            model(**x)
            walls.append(time.perf_counter() - t)
            calls += 1
    cpu = (time.thread_time() - cpu0) / calls
    return statistics.median(walls) * 1e3, statistics.quantiles(walls, n=10)[0] * 1e3, cpu * 1e3


def peak_tensor_bytes(fn) -> int:
    """Peak bytes of tensors allocated (and not yet freed) while `fn()` runs, from profiler memory events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    deltas = []
    for event in prof.events():
        delta = event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        if delta:
            deltas.append((event.time_range.start, delta))
    live = peak = 0
    for _, delta in sorted(deltas, key=lambda td: td[0]):
        live += delta
        peak = max(peak, live)
    return peak


def count(params) -> int:
    return sum(p.numel() for p in params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    seconds = 1.0 if args.quick else 4.0
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} (other jobs share the cores)")

    print("\n## Forward latency per sample, BENCH config (LoRA attention + 3D projection, R=16, 4 layers)")
    print("ms per sample; wall: median and 10th percentile of single calls; CPU: thread time per call;")
    print("no keypoints: median wall without the 3D projection (keypoints_3d=None)")
    print(f"{'d_model':>7} {'batch':>5} {'wall median':>11} {'wall p10':>8} {'CPU':>6} {'no keypoints':>12}")
    for d_model in (128, 512):
        model = EnhancedTransformerDecoderOnly3D(d_model=d_model, **BENCH).eval()
        for batch in (1, 64):
            wall, p10, cpu = latency(model, batch, d_model, seconds)
            wall_no_kp, _, _ = latency(model, batch, d_model, seconds / 2, keypoints=False)
            print(f"{d_model:>7} {batch:>5} {wall / batch:>11.3f} {p10 / batch:>8.3f} {cpu / batch:>6.3f} "
                  f"{wall_no_kp / batch:>12.3f}")

    shipped = find_weights(SHIPPED_EMBEDDER)
    if shipped is not None:
        model, _ = load_pretrained(shipped)
        c = model.config
        reads = f"the 7x7 map ({c['map_channels']} channels)" if c.get("map_channels") else "the embedding vector"
        print(f"shipped model ({shipped.relative_to(REPO_ROOT)}: reads {reads}, {c['num_layers']} layers, "
              f"R={c['voxel_resolution']}; d_model {c['d_model']}):")
        for batch in (1, 20):   # 20: a slider move that also redraws the 19-pose yaw sweep
            wall, p10, cpu = latency(model, batch, c["d_model"], seconds)
            print(f"  batch {batch:>2}: wall median {wall:.3f} ms, p10 {p10:.3f}, CPU {cpu:.3f} per call")

    print("\n## Parameters: LoRA adapter (freeze_base) vs full fine-tuning")
    print(f"{'d_model':>7} {'rank':>4} {'total':>9} {'trainable (LoRA only)':>22} {'LoRA':>7} {'LoRA %':>7} "
          f"{'full fine-tuning':>17}")
    for d_model in (128, 512):
        for rank in (4, 8, 16):
            model = EnhancedTransformerDecoderOnly3D(d_model=d_model, **{**BENCH, "rank": rank})
            total, full = count(model.parameters()), count(model.get_trainable_parameters())
            lora = count(model.get_lora_parameters())
            model.freeze_base()
            trainable = count(model.get_trainable_parameters())
            print(f"{d_model:>7} {rank:>4} {total:>9,} {trainable:>22,} {lora:>7,} {100 * lora / total:>6.2f}% "
                  f"{full:>17,}")

    print("\n## Peak tensor memory (torch profiler allocation events), d_model=128")
    print(f"{'R':>3} {'grid values/sample':>18} {'infer b=1 MiB':>14} {'infer b=64 MiB':>15} {'train b=64 MiB':>15} "
          f"{'ms/sample b=64':>15}")
    for resolution in (8, 16, 32):
        model = EnhancedTransformerDecoderOnly3D(d_model=128, **{**BENCH, "voxel_resolution": resolution}).eval()
        one, many = inputs(1, 128), inputs(64, 128)
        with torch.inference_mode():
            infer_1 = peak_tensor_bytes(lambda: model(**one))
            infer_64 = peak_tensor_bytes(lambda: model(**many))
        model.train()
        train_64 = peak_tensor_bytes(lambda: model(**many).pow(2).sum().backward())
        model.eval()
        wall, _, _ = latency(model, 64, 128, seconds / 2)
        values = (model.projection.channels + 1) * resolution ** 3  # feature + density grid
        print(f"{resolution:>3} {values:>18,} {infer_1 / MiB:>14.2f} {infer_64 / MiB:>15.1f} {train_64 / MiB:>15.1f} "
              f"{wall / 64:>15.3f}")


if __name__ == "__main__":
    main()
