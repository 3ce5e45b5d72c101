"""Pull + unpack of a ~5 MB image from a registry on loopback, into a cold store (run as root).

    .venv/bin/python bench/image_pull.py [--runs N]

The image: busybox (~1 MB compressed) and two layers like an application's (random data that does not
compress, and text that does), ~5 MB compressed, ~9 MB unpacked. Each run pulls into a new, empty
store (the registry's own caches are warm after the first). Prints every run and the median.
Goal: <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nodeagent.images.store import ImageStore, PullPolicy
from tests.integration.images import Entry, Layer, busybox_layer, gzip_layer, push_image
from tests.integration.registry import running_registry

WORDS = ("container", "image", "layer", "registry", "digest", "manifest", "overlay", "pod", "node", "kubelet")


def application_layers(rng: random.Random) -> list[Layer]:
    binary = [Entry("app", "dir", mode=0o755)] + [
        Entry(f"app/lib{index:03d}.so", data=rng.randbytes(12 * 1024), mode=0o755) for index in range(300)]
    text = [Entry("usr", "dir", mode=0o755), Entry("usr/share", "dir", mode=0o755)] + [
        Entry(f"usr/share/doc{index:03d}.txt", data=" ".join(rng.choices(WORDS, k=4000)).encode())
        for index in range(60)]
    return [gzip_layer(binary), gzip_layer(text)]


async def pull_once(root: str, reference: str, insecure: str) -> float:
    async with ImageStore(root, insecure_registries=[insecure]) as store:
        started = time.perf_counter()
        await store.ensure(reference, PullPolicy.ALWAYS)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    layers = [busybox_layer(), *application_layers(random.Random(6))]
    compressed = sum(len(layer.blob) for layer in layers)
    unpacked = sum(len(layer.tar) for layer in layers)
    with tempfile.TemporaryDirectory(prefix="image-pull-bench-") as directory, \
            running_registry(Path(directory) / "registry") as registry:
        pushed = push_image(registry, "bench/app", "1.0", layers)
        print(f"image: {len(layers)} layers, {compressed / 1e6:.1f} MB compressed, {unpacked / 1e6:.1f} MB of tar")
        seconds = []
        for run in range(arguments.runs):
            took = asyncio.run(pull_once(f"{directory}/store{run}", pushed.reference, registry.host))
            seconds.append(took)
            print(f"run {run + 1}: {took * 1000:.0f} ms")
    median = statistics.median(seconds)
    print(f"pull + unpack, cold store: median {median * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms "
          f"(goal <= 1000 ms): {'met' if median <= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
