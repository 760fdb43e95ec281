"""DPO's maths as step2_dpo's main.py computes it, on small tensors (the engines are tested in test_trials)."""

from __future__ import annotations

import math

import torch

from dstune.profile._dpo import BETA, answer_mask, dpo_loss, sequence_log_probs


def test_loss_is_log_two_while_the_policy_is_the_reference() -> None:
    logps = torch.tensor([-3.0, -5.0, -4.0, -2.0])  # 2 pairs: chosen first, rejected second
    assert math.isclose(dpo_loss(logps, logps).item(), math.log(2), rel_tol=1e-6)


def test_loss_falls_as_the_policy_prefers_the_chosen_answer() -> None:
    reference = torch.tensor([-4.0, -4.0])
    better = dpo_loss(torch.tensor([-2.0, -6.0]), reference)
    worse = dpo_loss(torch.tensor([-6.0, -2.0]), reference)
    assert better.item() < math.log(2) < worse.item()
    expected = -torch.nn.functional.logsigmoid(torch.tensor(BETA * 4.0)).item()
    assert math.isclose(better.item(), expected, rel_tol=1e-6)


def test_answer_mask_starts_where_chosen_and_rejected_differ() -> None:
    chosen = [5, 6, 7, 8, 9, 0]
    rejected = [5, 6, 7, 3, 4, 0]
    mask = answer_mask(torch.tensor([chosen, rejected]), pad_token_id=0)
    assert mask.tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0]]


def test_sequence_log_probs_sum_the_masked_tokens() -> None:
    ids = torch.tensor([[1, 2, 3]])
    logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens: each token costs log 4
    mask = torch.tensor([[0, 1, 1]])
    assert math.isclose(sequence_log_probs(logits, ids, mask).item(), -2 * math.log(4), rel_tol=1e-6)
