import pytest
import torch

from dlbench.config import build, compose
from dlbench.models import count_params, create_model
from dlbench.models.rnn import ScratchRecurrent, detach_state

MODES = ("rnn", "gru", "lstm")


def pair(mode, in_shape, num_classes, **kw):
    """The same net on torch's layers and from scratch, holding the same weights."""
    torch.manual_seed(0)
    fused = create_model(mode, in_shape=in_shape, num_classes=num_classes, impl="torch", **kw)
    scratch = create_model(mode, in_shape=in_shape, num_classes=num_classes, impl="scratch", **kw)
    assert isinstance(scratch.rnn, ScratchRecurrent) and not isinstance(fused.rnn, ScratchRecurrent)
    scratch.load_state_dict(fused.state_dict())  # strict: the parameter names and shapes agree
    return fused.eval(), scratch.eval()


@pytest.mark.parametrize("mode", MODES)
def test_scratch_and_torch_compute_the_same_language_model(mode):
    fused, scratch = pair(mode, (35,), 28, hidden=16, layers=2)
    x = torch.randint(0, 28, (3, 35))
    (a, state_a), (b, state_b) = fused(x), scratch(x)
    assert a.shape == (3, 35, 28)
    assert torch.allclose(a, b, atol=1e-5)
    # and carried on from that state, as sequential batches do
    (a2, _), (b2, _) = fused(x, state_a), scratch(x, state_b)
    assert torch.allclose(a2, b2, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_scratch_and_torch_compute_the_same_bidirectional_classifier(mode):
    fused, scratch = pair(mode, (1, 28, 28), 10, hidden=16, layers=2, bidirectional=True)
    x = torch.randn(4, 1, 28, 28)
    assert fused(x).shape == (4, 10)
    assert torch.allclose(fused(x), scratch(x), atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_agree_too(mode):
    fused, scratch = pair(mode, (1, 6, 5), 3, hidden=8)
    x = torch.randn(2, 1, 6, 5)
    fused(x).sum().backward()
    scratch(x).sum().backward()
    for (name, p), q in zip(fused.named_parameters(), scratch.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_parameter_count_is_the_gate_formula():
    # LSTM: 4 gates, each W_ih (H x V), W_hh (H x H), two biases; then the H -> V head
    model = create_model("lstm", in_shape=(35,), num_classes=28, hidden=32)
    assert count_params(model) == 4 * (32 * 28 + 32 * 32 + 2 * 32) + (32 * 28 + 28)


def test_images_are_read_row_by_row():
    model = build(compose(["model=gru", "model.hidden=8"]).model, in_shape=(1, 28, 28), num_classes=10)
    assert model.rnn.input_size == 28  # 28 steps of 28 pixels
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_a_bidirectional_language_model_is_refused():
    with pytest.raises(ValueError, match="bidirectional"):
        create_model("lstm", in_shape=(35,), num_classes=28, bidirectional=True)


def test_detached_state_keeps_values_and_drops_the_graph():
    h = torch.ones(1, 2, 3, requires_grad=True) * 2
    for state in (h, (h, h + 1)):
        out = detach_state(state)
        parts = out if isinstance(out, tuple) else (out,)
        assert all(not p.requires_grad for p in parts) and torch.equal(parts[0], h.detach())
