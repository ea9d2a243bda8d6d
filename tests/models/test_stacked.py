"""A cell's seeds as one stacked network: every seed's loss, gradients and parameters equal
its own network's, at initialisation and after optimiser steps (float32 tolerance)."""

import pytest
import torch
import torch.nn.functional as F

from repsim.models.fusion import FusionConvLSTM, ModelConfig, final_logits
from repsim.models.stacked import (
    GroupedLinear,
    clip_seed_grad_norms,
    seed_optimizer_state,
    seed_state,
    stack_optimizer_state,
    stack_state,
)

SEEDS = (3, 5, 8)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}  # float32: the stacked sums run in another order


def _batches(seeds, dtype, steps=3, batch=4):
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, steps, 1, 6, 6, generator=generator).to(dtype),
             torch.randn(batch, steps, 1, 6, 6, generator=generator).to(dtype),
             torch.randint(0, 10, (batch,), generator=generator)) for _ in seeds]


def _loss(logits, labels):
    if logits.dim() == 3:  # per-step readout: every step, as training does
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                               labels.repeat_interleave(logits.shape[1]))
    return F.cross_entropy(logits, labels)


def _trajectory(config, dtype, stacked, steps=2):
    """Per seed, at initialisation and after each of ``steps`` AdamW steps (gradients
    clipped to norm 0.5, so that clipping bites): its loss, gradients and parameters, by
    name, from each seed's own network or from one stacked network."""
    models = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        models.append(FusionConvLSTM(config).to(dtype))
    if stacked:
        network = FusionConvLSTM(config, seeds=len(SEEDS)).to(dtype)
        network.load_state_dict(stack_state([model.state_dict() for model in models]))
        optimizers = [torch.optim.AdamW(network.parameters(), lr=0.05, weight_decay=0.1)]
    else:
        optimizers = [torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
                      for model in models]
    batches = _batches(SEEDS, dtype)
    seen = []
    for _ in range(steps + 1):
        if stacked:
            params = [{k: v.clone() for k, v in seed_state(network.state_dict(), len(SEEDS),
                                                           s).items()}
                      for s in range(len(SEEDS))]
            logits = network(torch.cat([b[0] for b in batches], dim=2),
                             torch.cat([b[1] for b in batches], dim=2))
            logits = logits.unflatten(-1, (len(SEEDS), -1))
            losses = [_loss(logits.select(-2, s), labels)
                      for s, (_, _, labels) in enumerate(batches)]
            optimizers[0].zero_grad()
            torch.stack(losses).sum().backward()
            clip_seed_grad_norms(network.parameters(), len(SEEDS), max_norm=0.5)
            grads = [{name: p.grad.chunk(len(SEEDS))[s].clone()
                      for name, p in network.named_parameters()} for s in range(len(SEEDS))]
        else:
            params = [{k: v.clone() for k, v in model.state_dict().items()}
                      for model in models]
            losses, grads = [], []
            for model, optimizer, (audio, visual, labels) in zip(models, optimizers, batches,
                                                                 strict=True):
                optimizer.zero_grad()
                loss = _loss(model(audio, visual), labels)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                losses.append(loss)
                grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
        seen.append([{"loss": loss.detach(), **{f"grad {k}": v for k, v in grad.items()},
                      **{f"param {k}": v for k, v in param.items()}}
                     for loss, grad, param in zip(losses, grads, params, strict=True)])
        for optimizer in optimizers:
            optimizer.step()
    return seen


@pytest.mark.parametrize(("fusion_layer", "fusion_op", "readout"), [
    (1, "concat", "last"), (2, "gated", "last"), (3, "film", "per_step"),
    (2, "concat", "per_step")])
def test_stacked_seeds_equal_their_own_networks_through_optimiser_steps(
        fusion_layer, fusion_op, readout):
    """Float32 tolerance. At initialisation: ``assert_close`` with rtol 1e-5, atol 1e-6.
    After AdamW steps, whose normalised update turns the rounding of a gradient entry near
    zero into a parameter change of up to lr times its relative error, no fixed tolerance
    holds for the unstacked network itself: so each stacked seed's losses, gradients and
    parameters must lie as close to the exact trajectory (the same networks in float64) as
    its own network's float32 ones do, within a factor of 3 (plus 1e-6)."""
    config = ModelConfig(layers=2, hidden=4, fusion_layer=fusion_layer, fusion_op=fusion_op,
                         readout=readout, match_params=True)
    alone = _trajectory(config, torch.float32, stacked=False)
    exact = _trajectory(config, torch.float64, stacked=False)
    stacked = _trajectory(config, torch.float32, stacked=True)

    def error(values, reference, kind):
        return max(float((values[name].double() - reference[name]).abs().max())
                   for name in reference if name.split(" ")[0] == kind)

    for step, (mine, theirs, reference) in enumerate(zip(stacked, alone, exact, strict=True)):
        for s in range(len(SEEDS)):
            assert mine[s].keys() == theirs[s].keys()
            if step == 0:
                for name, value in theirs[s].items():
                    torch.testing.assert_close(mine[s][name], value, **TOLERANCE,
                                               msg=f"seed {SEEDS[s]} {name}")
            for kind in ("loss", "grad", "param"):
                own = error(theirs[s], reference[s], kind)
                got = error(mine[s], reference[s], kind)
                assert got <= 3 * own + TOLERANCE["atol"], (
                    f"step {step}, seed {SEEDS[s]}, {kind}: the stacked seed is {got:.3g} "
                    f"from the float64 trajectory, its own network {own:.3g}")


def test_optimizer_states_stack_and_unstack_exactly():
    config = ModelConfig(layers=1, hidden=3, fusion_layer=2)
    models, optimizers = [], []
    for seed in SEEDS:
        torch.manual_seed(seed)
        model = FusionConvLSTM(config)
        optimizer = torch.optim.AdamW(model.parameters())
        model(*torch.randn(2, 2, 3, 1, 6, 6)).sum().backward()
        optimizer.step()
        models.append(model)
        optimizers.append(optimizer)
    stacked = stack_optimizer_state([optimizer.state_dict() for optimizer in optimizers])
    for s, optimizer in enumerate(optimizers):
        back = seed_optimizer_state(stacked, len(SEEDS), s)
        original = optimizer.state_dict()
        assert back["param_groups"] == original["param_groups"]
        for index, entry in original["state"].items():
            for key, value in entry.items():
                assert torch.equal(back["state"][index][key], value), (index, key)
        for name, value in seed_state(stack_state([m.state_dict() for m in models]),
                                      len(SEEDS), s).items():
            assert torch.equal(value, models[s].state_dict()[name])
    optimizers[1].step()  # one seed a step ahead: refused
    with pytest.raises(ValueError, match="different optimiser steps"):
        stack_optimizer_state([optimizer.state_dict() for optimizer in optimizers])


def test_grouped_linear_is_its_groups_linear_layers():
    torch.manual_seed(0)
    layer = GroupedLinear(5, 3, groups=4)
    x = torch.randn(7, 2, 4 * 5)
    out = layer(x)
    for g in range(4):
        linear = torch.nn.Linear(5, 3)
        with torch.no_grad():
            linear.weight.copy_(layer.weight[3 * g:3 * (g + 1)])
            linear.bias.copy_(layer.bias[3 * g:3 * (g + 1)])
        torch.testing.assert_close(out[..., 3 * g:3 * (g + 1)], linear(x[..., 5 * g:5 * (g + 1)]),
                                   **TOLERANCE)
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        FusionConvLSTM(ModelConfig(), seeds=0)


def test_the_stacked_network_predicts_each_seed_as_its_own():
    config = ModelConfig(layers=2, hidden=4, fusion_layer=2, fusion_op="gated")
    torch.manual_seed(1)
    models = [FusionConvLSTM(config) for _ in range(2)]
    stacked = FusionConvLSTM(config, seeds=2)
    stacked.load_state_dict(stack_state([model.state_dict() for model in models]))
    audio, visual = torch.randn(2, 5, 4, 1, 6, 6)
    with torch.no_grad():
        logits = stacked(audio.repeat(1, 1, 2, 1, 1), visual.repeat(1, 1, 2, 1, 1))
        for s, model in enumerate(models):
            torch.testing.assert_close(final_logits(logits)[:, 10 * s:10 * (s + 1)],
                                       model(audio, visual), **TOLERANCE)
