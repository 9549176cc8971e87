import torch
from torch import nn

from dlbench.data import Batches, Split
from dlbench.loop import evaluate, train_one_epoch


def test_evaluate_matches_a_direct_computation():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    split = Split(torch.randn(10, 4), torch.randint(0, 3, (10,)))
    result = evaluate(model, Batches(split, batch_size=3, shuffle=False), nn.CrossEntropyLoss())
    logits = model(split.x)
    assert abs(result["loss"] - nn.functional.cross_entropy(logits, split.y).item()) < 1e-6
    assert result["acc"] == (logits.argmax(1) == split.y).float().mean().item()
    assert not model.training


def test_train_one_epoch_reports_the_example_weighted_mean_and_calls_on_step():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    split = Split(torch.randn(10, 4), torch.randint(0, 3, (10,)))
    seen = []
    # lr=0: the weights do not move, so the epoch's mean loss must equal the loss of the data
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    result = train_one_epoch(model, Batches(split, 4, shuffle=False), nn.CrossEntropyLoss(), opt,
                             on_step=lambda step: seen.append(step["loss"]))
    assert len(seen) == 3 and all(t.dim() == 0 and not t.requires_grad for t in seen)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(split.x), split.y).item()
    assert abs(result["loss"] - expected) < 1e-6  # batches of 4, 4, 2 weighted by size
    assert model.training


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(256, 4)
    split = Split(x, (x[:, 0] > 0).long())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = [train_one_epoch(model, Batches(split, 32, True, torch.Generator().manual_seed(e)),
                              nn.CrossEntropyLoss(), opt)["loss"] for e in range(5)]
    assert losses[-1] < 0.6 * losses[0]
