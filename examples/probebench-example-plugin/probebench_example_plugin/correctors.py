"""``runner-up-step``: a label-free pixel-space corrector baseline."""

from __future__ import annotations


class RunnerUpStep:
    """Signed-gradient pixel steps that raise the classifier's runner-up class
    until it becomes the prediction, with a per-sample stop.

    The guess behind it: when a classifier is wrong, the true class is often
    its second choice. Each step moves every pixel by ``step_size`` against
    the gradient of the cross-entropy towards the runner-up class (clamped to
    [0, 1]); a sample stops as soon as the runner-up is its top class, or after
    ``max_steps``. It never sees a label. Applied to a hit it breaks it, so it
    is meant for the samples a miss detector flags.
    """

    name = "runner-up-step"
    version = "1"
    reference = (
        "A baseline of this example plugin; the step is FGSM's (Goodfellow et al., ICLR 2015), aimed at a class."
    )
    option_help = {
        "step_size": "L-infinity size of each pixel step (images are in [0, 1])",
        "max_steps": "steps after which a sample that has not crossed is left as it is",
    }

    def __init__(self, step_size: float = 0.01, max_steps: int = 100):
        from probebench.errors import UserError

        if not 0 < step_size <= 1:
            raise UserError(f"runner-up-step: step_size must lie in (0, 1], got {step_size}")
        if max_steps < 1:
            raise UserError(f"runner-up-step: max_steps must be >= 1, got {max_steps}")
        self.step_size, self.max_steps = step_size, max_steps

    def correct(self, ctx, images):
        import torch

        from probebench.kinds import Correction

        edited, steps = [], []
        with torch.enable_grad():  # the caller may hold torch.no_grad()
            for chunk in images.split(ctx.batch_size):
                x, n = self._correct_chunk(ctx.classifier, chunk.to(ctx.device))
                edited.append(x.to(images.device))
                steps.append(n.cpu())
        return Correction(torch.cat(edited), torch.cat(steps))

    def _correct_chunk(self, model, x):
        import torch

        x = x.clone()
        steps = torch.zeros(len(x), dtype=torch.long, device=x.device)
        with torch.no_grad():
            target = model(x).topk(2, dim=1).indices[:, 1]
        active = torch.arange(len(x), device=x.device)
        for _ in range(self.max_steps):
            moving = x[active].requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(moving), target[active], reduction="sum")
            (grad,) = torch.autograd.grad(loss, moving)
            with torch.no_grad():
                x[active] = (moving - self.step_size * grad.sign()).clamp(0, 1)
                steps[active] += 1
                crossed = model(x[active]).argmax(dim=1) == target[active]
            active = active[~crossed]
            if len(active) == 0:
                break
        return x.detach(), steps
