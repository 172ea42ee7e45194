"""Is |x - G(x, runner-up)| a saliency mask? A deletion check.

For each seed: the ``cf-gan`` classifier of the suite ``mnist-cfgan`` (read from
the artifact cache, ``$PROBEBENCH_CACHE``; trained here if missing) and, as a
second judge, the ``cnn`` of ``mnist-cfgan-cnn`` with the same seed. Over the
test images that cf-gan classifies right, it deletes the top k pixels of three
saliency maps and prints how often the prediction changes (the flip rate):

- ``counterfactual``: |x - G(x, runner-up)|, the paper's saliency, toward the
  class cf-gan ranks second (as the ``cf-gan`` corrector does);
- ``gradient``: |d logit_pred / dx|, plain input-gradient saliency of cf-gan;
- ``random``: k pixels drawn uniformly (seeded).

A deleted pixel becomes 0 (``zero``, MNIST's background) or the pixel of the
image blurred by a Gaussian of sigma 2 (``blur``). k is a share of the pixels
(``--fractions``). A saliency mask that points at the evidence flips more
predictions than random pixels do.

    python examples/cfgan_deletion.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse


def main() -> None:
    import torch

    from probebench.plugins.classifiers._cfgan_checks import delete_top_pixels, gan_and_judge
    from probebench.plugins.corruptions._cure_ops import _filter, _gaussian_kernel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--fractions", default="0.05,0.1", help="shares of the pixels to delete")
    parser.add_argument("--gan-suite", default="mnist-cfgan")
    parser.add_argument("--judge-suite", default="mnist-cfgan-cnn")
    args = parser.parse_args()

    splits, models = gan_and_judge(args.gan_suite, args.judge_suite, [int(s) for s in args.seeds.split(",")])
    print("seed  fill  k-share  saliency        flips(cf-gan)  flips(cnn)  n")
    for seed, gan, judge in models:
        images, labels = splits.test_images, splits.test_labels
        with torch.no_grad():
            logits = gan(images)
        right = logits.argmax(dim=1) == labels
        x, predicted = images[right], labels[right]
        runner_up = logits[right].topk(2, dim=1).indices[:, 1]
        with torch.no_grad():
            judge_predicted = judge(x).argmax(dim=1)
            counterfactual = (x - gan.counterfactual(x, runner_up)).abs()
        probe = x.clone().requires_grad_(True)
        gan(probe).gather(1, predicted[:, None]).sum().backward()
        saliencies = {
            "counterfactual": counterfactual,
            "gradient": probe.grad.abs(),
            "random": torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)),
        }
        fills = {"zero": torch.zeros_like(x), "blur": _filter(x, _gaussian_kernel(2.0))}
        pixels = x.shape[2] * x.shape[3]
        for fill_name, fill in fills.items():
            for fraction in (float(f) for f in args.fractions.split(",")):
                k = round(fraction * pixels)
                for name, saliency in saliencies.items():
                    deleted = delete_top_pixels(x, saliency, k, fill)
                    with torch.no_grad():
                        flips = float((gan(deleted).argmax(dim=1) != predicted).float().mean())
                        judge_flips = float((judge(deleted).argmax(dim=1) != judge_predicted).float().mean())
                    print(
                        f"{seed:4d}  {fill_name:4s}  {fraction:7.2f}  {name:14s}  {flips:13.3f}  {judge_flips:10.3f}"
                        f"  {len(x)}"
                    )


if __name__ == "__main__":
    main()
