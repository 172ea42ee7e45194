"""How often an independent classifier calls cf-gan's counterfactuals the class they were made for.

For each seed: the ``cf-gan`` classifier of the suite ``mnist-cfgan`` and, as the
judge, the ``cnn`` of ``mnist-cfgan-cnn`` with the same seed (trained apart, on the
same training split), both read from the artifact cache (``$PROBEBENCH_CACHE``;
run both suites first, or a missing model is trained here). Over the test images x
and every class c other than x's label, it prints the judge rate (the share of
G(x, c) the judge classifies as c; chance is 1/C) and the mean |x - G(x, c)| per
pixel, and the same two numbers for the identity G(x, label).

    python examples/cfgan_judge.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse


def main() -> None:
    import torch

    from probebench.plugins.classifiers._cfgan_checks import gan_and_judge, source_retrieval_rate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--gan-suite", default="mnist-cfgan")
    parser.add_argument("--judge-suite", default="mnist-cfgan-cnn")
    parser.add_argument("--sources", type=int, default=100, help="source images of the retrieval rate")
    args = parser.parse_args()

    splits, models = gan_and_judge(args.gan_suite, args.judge_suite, [int(s) for s in args.seeds.split(",")])
    images, labels = splits.test_images, splits.test_labels
    num_classes = splits.dataset.num_classes
    print("seed  judge-rate  mean|x-G(x,c)|  identity-judge-rate  mean|x-G(x,y)|  retrieval  chance")
    for seed, gan, judge in models:
        hits = pairs = 0
        distance = 0.0
        with torch.no_grad():
            for c in range(num_classes):
                x = images[labels != c]
                made = gan.counterfactual(x, torch.full((len(x),), c))
                hits += int((judge(made).argmax(dim=1) == c).sum())
                pairs += len(x)
                distance += float((made - x).abs().mean(dim=(1, 2, 3)).sum())
            same = gan.counterfactual(images, labels)
            kept = float((judge(same).argmax(dim=1) == labels).float().mean())
            same_distance = float((same - images).abs().mean())
            retrieval = chance = 0.0
            sources, source_labels = images[: args.sources], labels[: args.sources]
            for c in range(num_classes):
                x = sources[source_labels != c]
                retrieval += source_retrieval_rate(gan.counterfactual(x, torch.full((len(x),), c)), x) / num_classes
                chance += 1 / len(x) / num_classes
        print(
            f"{seed:4d}  {hits / pairs:10.3f}  {distance / pairs:14.3f}  {kept:19.3f}  {same_distance:14.3f}"
            f"  {retrieval:9.3f}  {chance:6.3f}"
        )


if __name__ == "__main__":
    main()
