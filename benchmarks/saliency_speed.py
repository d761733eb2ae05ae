"""Closed-form integrated gradients vs Captum's LayerIntegratedGradients, side by side on the same inputs.

The reference p=113 model (d_model 128, d_mlp 512, 1 layer, no LayerNorm; random weights: the cost
does not depend on them), attributions of the correct-class logit to blocks.0.mlp.hook_post.
Prints seconds per method, the ratio, and the largest difference between the two.

    python benchmarks/saliency_speed.py            # 2048 inputs (~1 min on 2 CPU cores)
    python benchmarks/saliency_speed.py --inputs 0 # all 12769 inputs
"""

from __future__ import annotations

import argparse
import time

import torch

from interp_grok import GrokTransformer, make_dataset, preset
from interp_grok.analyses import saliency


def best_of(repeats: int, fn):
    """(smallest wall-clock seconds over `repeats` calls, last result)."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=2048, help="number of inputs (0: all p² = 12769)")
    parser.add_argument("--n-steps", type=int, default=50, help="Captum integration steps")
    parser.add_argument("--batch-size", type=int, default=256, help="Captum inputs per batch")
    parser.add_argument("--repeats", type=int, default=3, help="closed-form repeats (best taken)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); "
                        "1 gives steadier timings on a busy machine")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = preset("nanda")
    model = GrokTransformer.for_task(config.model, config.task.p).to(args.device).eval()
    data = make_dataset(config.task)
    n = args.inputs or len(data.inputs)
    index = torch.randperm(len(data.inputs), generator=torch.Generator().manual_seed(0))[:n]
    inputs, labels = data.inputs[index], data.labels[index]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def closed():
        out = saliency.attributions(model, inputs, labels)
        sync()
        return out

    def captum():
        out = saliency.attributions(model, inputs, labels, exact=False, n_steps=args.n_steps,
                                    batch_size=args.batch_size)
        sync()
        return out

    closed()  # warm-up
    t_closed, fast = best_of(args.repeats, closed)
    t_captum, slow = best_of(1, captum)
    print(f"p={config.task.p}, d_mlp={config.model.d_mlp}, {n} inputs, Captum n_steps={args.n_steps}, "
          f"device {args.device}, {torch.get_num_threads()} threads")
    print(f"closed form (activation x W_out W_U): {t_closed:8.4f} s")
    print(f"Captum LayerIntegratedGradients:      {t_captum:8.4f} s")
    print(f"speed-up: {t_captum / t_closed:,.0f}x   max |difference|: {(fast - slow).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
