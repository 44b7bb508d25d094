"""Pretraining objectives on tiny models: losses fall, and masks, queues, momenta, temperatures are as stated."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from bench.pretraining import budget, data, joint, language, vision
from bench.pretraining.objective import OBJECTIVES, build, example_batch
from bench.pretraining.protocol import Plan, pretrain

TRAINABLE = [name for name in OBJECTIVES if not name.startswith("random-init")]
#: MoCo has its own test (its loss depends on what the queue holds)
GENERIC = [name for name in TRAINABLE if name != "moco"]


def test_every_objective_of_the_issue_is_registered() -> None:
    groups = {name: group for name, (group, _) in OBJECTIVES.items()}
    assert {n for n, g in groups.items() if g == "language"} == {
        "mlm",
        "clm",
        "denoise",
        "mass",
        "random-init-language",
    }
    assert {n for n, g in groups.items() if g == "vision"} == {"mae", "rotnet", "simclr", "moco", "supervised",
                                                              "random-init"}  # fmt: skip
    assert {n for n, g in groups.items() if g == "joint"} == {"clip", "align-noisy", "random-init-joint"}


def _fixed_loss(objective, batch) -> float:
    """The loss on ``batch`` under a fixed RNG (same masks and views), on a copy."""
    model = copy.deepcopy(objective).train()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(123)
        return float(model(*batch))


@pytest.mark.parametrize("name", GENERIC)
def test_loss_decreases_over_a_few_steps(name: str) -> None:
    """Twelve steps on a fixed pool of 32 samples, fixed seeds: the loss on that pool (same masks and views) falls."""
    torch.manual_seed(0)
    objective = build(name, width=16)
    pool = objective.prepare_pool(data.pool(objective.group, 32, 0), 0)
    batch = objective.batch(pool, torch.arange(32))
    before = _fixed_loss(objective, batch)
    plan = Plan(budgets={}, batch_size=32, lr=3e-3, warmup=0.0)
    losses = pretrain(objective, pool, 12, plan, seed=0)
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    after = _fixed_loss(objective, batch)
    assert after < 0.95 * before, (before, after, losses)


def test_moco_loss_decreases_against_keys_of_other_images() -> None:
    """MoCo's loss rises in training as the random queue fills with real keys, so it is measured against a queue
    of the current key encoder's keys of 32 other images. Small queue and momentum, so 12 steps show it."""

    def loss(moco, images: torch.Tensor) -> float:
        m = copy.deepcopy(moco).train()
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(123)
            m.queue.copy_(F.normalize(m.key_project(m.key_backbone(vision.augment(images[32:]))), dim=1))
            m.queue_ptr.zero_()
            return float(m(images[:32]))

    torch.manual_seed(0)
    moco = build("moco", width=16, queue=32, momentum=0.5)
    pool = data.pool("vision", 64, 0)
    (images,) = moco.batch(pool, torch.arange(64))
    before = loss(moco, images)
    pretrain(moco, pool, 12, Plan(budgets={}, batch_size=32, lr=1e-2, warmup=0.0), seed=0)
    assert loss(moco, images) < 0.95 * before


def test_mlm_masks_fifteen_percent_with_80_10_10() -> None:
    torch.manual_seed(0)
    tokens = data.documents(400, 0)
    inputs, targets = language.mlm_mask(tokens)
    words = tokens >= len(data.SPECIALS)
    chosen = targets != language.IGNORE
    assert torch.equal(chosen.sum(1), (0.15 * words.sum(1).float()).round().clamp(min=1).long())
    assert bool((chosen <= words).all()) and torch.equal(targets[chosen], tokens[chosen])
    assert torch.equal(inputs[~chosen], tokens[~chosen])
    n = int(chosen.sum())
    masked = int((inputs[chosen] == data.MASK).sum()) / n
    kept = int((inputs[chosen] == tokens[chosen]).sum()) / n
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.03  # ~1,900 draws: 3 points is > 3 sigma
    assert abs((1 - masked - kept) - 0.1) < 0.03 + 0.01  # a random word can equal the original (1 in 40)


def test_bart_noise_permutes_sentences_and_infills_spans() -> None:
    torch.manual_seed(0)
    words = data.documents(1, 0)[0]
    ids = [int(t) for t in words if int(t) >= len(data.SPECIALS)]
    permuted = language.bart_noise(ids, ratio=0.0)
    stop = data.TOKEN_IDS["."]
    cut = ids.index(stop) + 1
    assert permuted in (ids, ids[cut:] + ids[:cut])
    noised = language.bart_noise(ids)
    assert data.MASK in noised and len(noised) < len(ids)


def test_mass_masks_one_contiguous_half() -> None:
    torch.manual_seed(0)
    words = list(range(10, 30))
    masked, span = language.mass_span(words)
    assert len(span) == 10 and masked.count(data.MASK) == 10
    start = masked.index(data.MASK)
    assert masked[start : start + 10] == [data.MASK] * 10 and words[start : start + 10] == span


def test_mae_hides_exactly_75_percent_of_patches() -> None:
    hidden = vision.mae_mask(8, 64)
    assert torch.equal(hidden.sum(1), torch.full((8,), 48))
    assert not torch.equal(hidden[0], hidden[1])  # a choice per image


def test_patchify_matches_timms_patch_order() -> None:
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    p = vision.patchify(img, 4)
    assert p.shape == (2, 4, 48)
    assert torch.equal(p[0, 1].view(4, 4, 3).permute(2, 0, 1), img[0, :, 0:4, 4:8])  # patch 1: top right


@pytest.mark.parametrize("tau", [0.5, 2.0])  # float32 keeps ~7 digits: a loss near 0 would test rounding
def test_nt_xent_temperature(tau: float) -> None:
    """Views identical, all pairs orthogonal: loss = -log(e^{1/tau} / (e^{1/tau} + 2n - 2))."""
    n = 3
    z = torch.eye(n)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * n - 2))
    assert float(vision.nt_xent(z, z, tau)) == pytest.approx(expected, rel=1e-5)


def test_moco_queue_and_momentum_updates() -> None:
    torch.manual_seed(0)
    moco = build("moco", width=16, queue=10)
    keys = F.normalize(torch.randn(4, vision.PROJ), dim=1)
    for i in range(3):  # 12 keys into a queue of 10: the first two slots hold the last keys
        moco.enqueue(keys + i)
    assert int(moco.queue_ptr) == 12 % 10
    assert torch.equal(moco.queue[0:2], (keys + 2)[2:4]) and torch.equal(moco.queue[2:4], keys[2:4])
    assert torch.equal(moco.queue[4:8], keys + 1) and torch.equal(moco.queue[8:10], (keys + 2)[0:2])
    q_before = [p.detach().clone() for p in moco.backbone.parameters()]
    k_before = [p.detach().clone() for p in moco.key_backbone.parameters()]
    with torch.no_grad():
        for p in moco.backbone.parameters():
            p.add_(1.0)
    moco.after_step()
    m = moco.momentum
    for q, k, now in zip(q_before, k_before, moco.key_backbone.parameters(), strict=True):
        assert torch.allclose(now, m * k + (1 - m) * (q + 1.0), atol=1e-6)
    assert not any(p.requires_grad for p in moco.key_backbone.parameters())


def test_moco_forward_enqueues_the_batch_keys() -> None:
    torch.manual_seed(0)
    moco = build("moco", width=16, queue=64)
    (images,) = example_batch(moco, 8)
    before = moco.queue.clone()
    moco(images)
    assert int(moco.queue_ptr) == 8
    assert torch.equal(moco.queue[8:], before[8:]) and not torch.equal(moco.queue[:8], before[:8])


def test_clip_temperature_and_loss() -> None:
    clip = build("clip", width=16)
    assert float(clip.logit_scale.exp()) == pytest.approx(1 / joint.CLIP_TAU)
    n, tau = 4, 0.5  # at CLIP_TAU the loss of orthogonal pairs is ~2e-6: float32 rounding, not a test
    z = torch.eye(n)
    scale = torch.tensor(math.log(1 / tau))
    e = math.exp(1 / tau)
    assert float(joint.clip_loss(z, z, scale)) == pytest.approx(-math.log(e / (e + n - 1)), rel=1e-5)


def test_align_noisy_corrupts_the_stated_fraction_of_captions() -> None:
    noisy = build("align-noisy", width=16)
    pool = data.image_set(100, 0)
    seen = noisy.prepare_pool(pool, 0)
    wrong = (seen.captions != pool.captions).any(1)
    assert int(wrong.sum()) == round(joint.ALIGN_NOISE * 100)
    assert torch.equal(seen.images, pool.images)
    assert build("clip", width=16).prepare_pool(pool, 0) is pool


def test_the_step_cost_is_counted_forward_and_backward_exactly() -> None:
    """A toy objective with a closed form: one Linear, inputs without gradient: forward n a b, step 2 n a b."""
    from bench.pretraining.objective import Objective

    class Toy(Objective):
        group = "vision"

        def __init__(self) -> None:
            super().__init__()
            self.backbone = torch.nn.Linear(6, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.backbone(x).pow(2).mean()

    cost = budget.step_cost(Toy(), (torch.randn(5, 6),))
    assert (cost.forward_macs, cost.step_macs, cost.step_flops) == (5 * 6 * 4, 2 * 5 * 6 * 4, 4 * 5 * 6 * 4)
    assert budget.steps_for(1000.0, cost.step_flops) == 1000 // 480
    assert budget.steps_for(100.0, 0) == 0
    assert budget.checkpoint_steps(10, (0.25, 0.5, 1.0)) == (2, 5, 10)


def test_equal_budgets_give_the_costlier_step_fewer_steps() -> None:
    torch.manual_seed(0)
    rot, sim = build("rotnet", width=16), build("simclr", width=16)
    c_rot = budget.step_cost(rot, example_batch(rot, 8))
    c_sim = budget.step_cost(sim, example_batch(sim, 8))
    assert c_sim.step_macs > 1.9 * c_rot.step_macs  # two views per image
    b = 50 * c_rot.step_flops
    assert budget.steps_for(b, c_rot.step_flops) == 50 and budget.steps_for(b, c_sim.step_flops) < 27
    moco = build("moco", width=16)
    c_moco = budget.step_cost(moco, example_batch(moco, 8))
    assert c_moco.step_macs < 0.8 * c_sim.step_macs  # two views too, but the key encoder has no backward


def test_step_cost_leaves_the_objective_untouched() -> None:
    torch.manual_seed(0)
    moco = build("moco", width=16)
    before = moco.queue.clone()
    budget.step_cost(moco, example_batch(moco, 8))
    assert torch.equal(moco.queue, before) and int(moco.queue_ptr) == 0
    assert all(p.grad is None for p in moco.parameters())
