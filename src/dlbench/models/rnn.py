"""Recurrent nets: RNN, GRU and LSTM, each on torch.nn's fused layers (`impl: torch`) or written out
gate by gate (`impl: scratch`). The scratch layers keep torch's parameter names, shapes, gate order
and initialisation, so a state dict loads into either and the two compute the same function.

The same builder serves two kinds of data, told apart by the input shape:
  (T,) token ids          -> a character language model: logits for every step, and the state
  (C, H, W) images        -> a sequence classifier: H steps of C*W features, classes from the last state
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from dlbench import choices
from dlbench.models.registry import register_model

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # blocks of `hidden` rows in weight_ih / weight_hh
TORCH_LAYERS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def rnn_step(xw, state, w_hh, b_hh):
    (h,) = state
    h = torch.tanh(xw + F.linear(h, w_hh, b_hh))
    return h, (h,)


def gru_step(xw, state, w_hh, b_hh):
    (h,) = state
    xr, xz, xn = xw.chunk(3, 1)
    hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, 1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)  # reset and update gates
    n = torch.tanh(xn + r * hn)                              # candidate state
    h = (1 - z) * n + z * h
    return h, (h,)


def lstm_step(xw, state, w_hh, b_hh):
    h, c = state
    i, f, g, o = (xw + F.linear(h, w_hh, b_hh)).chunk(4, 1)  # input, forget, cell, output: torch's order
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, (h, c)


STEPS = {"rnn": rnn_step, "gru": gru_step, "lstm": lstm_step}


class ScratchRecurrent(nn.Module):
    """A drop-in for nn.RNN/GRU/LSTM(batch_first=True): forward(x (B, T, F), state) ->
    (outputs (B, T, D*H), state), the state in torch's layout ((L*D, B, H), a pair for the LSTM)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__()
        self.mode, self.hidden_size, self.num_layers = mode, hidden_size, num_layers
        self.dropout, self.directions = dropout, 2 if bidirectional else 1
        rows = GATES[mode] * hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.directions
            for suffix in self._suffixes(layer):
                self.register_parameter(f"weight_ih{suffix}", nn.Parameter(torch.empty(rows, width)))
                self.register_parameter(f"weight_hh{suffix}", nn.Parameter(torch.empty(rows, hidden_size)))
                self.register_parameter(f"bias_ih{suffix}", nn.Parameter(torch.empty(rows)))
                self.register_parameter(f"bias_hh{suffix}", nn.Parameter(torch.empty(rows)))
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][:self.directions]

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # torch's initialisation, so the two impls train alike
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, state=None):
        states = self._split_state(state, x)  # one tuple of (B, H) tensors per layer and direction
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)  # between layers, as torch does
            outs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                seq = x if d == 0 else x.flip(1)  # the reverse direction reads the sequence backwards
                out, final = self._run(seq, states[layer * self.directions + d], suffix)
                outs.append(out if d == 0 else out.flip(1))
                finals.append(final)
            x = torch.cat(outs, dim=2)  # (B, T, D*H)
        return x, self._join_state(finals)

    def _run(self, x: torch.Tensor, state: tuple, suffix: str):
        step = STEPS[self.mode]
        w_hh, b_hh = getattr(self, f"weight_hh{suffix}"), getattr(self, f"bias_hh{suffix}")
        # the input's share of every gate for all steps in one matmul; only h @ W_hh is sequential
        xw = F.linear(x, getattr(self, f"weight_ih{suffix}"), getattr(self, f"bias_ih{suffix}"))  # (B, T, G*H)
        outs = []
        for t in range(x.shape[1]):
            h, state = step(xw[:, t], state, w_hh, b_hh)
            outs.append(h)
        return torch.stack(outs, dim=1), state  # (B, T, H)

    def _split_state(self, state, x: torch.Tensor) -> list[tuple]:
        if state is None:
            zeros = x.new_zeros(self.num_layers * self.directions, x.shape[0], self.hidden_size)
            state = (zeros, zeros) if self.mode == "lstm" else zeros
        parts = state if self.mode == "lstm" else (state,)
        return list(zip(*(p.unbind(0) for p in parts)))

    def _join_state(self, finals: list[tuple]):
        stacked = tuple(torch.stack(part) for part in zip(*finals))  # each (L*D, B, H)
        return stacked if self.mode == "lstm" else stacked[0]


def recurrent_layer(mode: str, impl: str, input_size: int, hidden: int, layers: int, dropout: float,
                    bidirectional: bool) -> nn.Module:
    impls = choices.implement(choices.RECURRENT_IMPLS, {
        "torch": lambda **kw: TORCH_LAYERS[mode](batch_first=True, **kw),
        "scratch": lambda **kw: ScratchRecurrent(mode, **kw)})
    if impl not in impls:
        raise ValueError(f"unknown impl {impl!r}; valid: {', '.join(impls)}")
    return impls[impl](input_size=input_size, hidden_size=hidden, num_layers=layers,
                       dropout=dropout if layers > 1 else 0.0,  # dropout acts between layers only
                       bidirectional=bidirectional)


def detach_state(state):
    """Keep the state's values across batches but cut the graph (truncated backprop through time)."""
    return state.detach() if isinstance(state, torch.Tensor) else tuple(s.detach() for s in state)


class CharLM(nn.Module):
    """Token ids (B, T) -> one-hot -> recurrent layers -> logits (B, T, vocab) for the next token."""

    def __init__(self, vocab: int, rnn: nn.Module, hidden: int):
        super().__init__()
        self.vocab = vocab
        self.rnn = rnn
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.rnn(F.one_hot(x, self.vocab).float(), state)  # (B, T, H)
        return self.head(out), state


class SequenceClassifier(nn.Module):
    """An image (B, C, H, W) read as H steps of C*W features; classes from the last layer's final state."""

    def __init__(self, rnn: nn.Module, hidden: int, directions: int, num_classes: int):
        super().__init__()
        self.rnn = rnn
        self.directions = directions
        self.head = nn.Linear(hidden * directions, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(0, 2, 1, 3).flatten(2)  # (B, H, C*W): one image row per step
        _, state = self.rnn(seq)
        h = state[0] if isinstance(state, tuple) else state  # the LSTM's (h, c): classify from h
        last = h[-self.directions:]  # the last layer's final state, each direction: (D, B, H)
        return self.head(last.permute(1, 0, 2).flatten(1))


def char_lm(mode, in_shape, num_classes, hidden, layers, dropout, bidirectional, impl) -> nn.Module:
    if bidirectional:
        raise ValueError("a bidirectional language model would read the characters it is asked to predict;"
                         " use bidirectional=false")
    return CharLM(num_classes, recurrent_layer(mode, impl, num_classes, hidden, layers, dropout, False), hidden)


def sequence_classifier(mode, in_shape, num_classes, hidden, layers, dropout, bidirectional, impl) -> nn.Module:
    c, _, w = in_shape
    rnn = recurrent_layer(mode, impl, c * w, hidden, layers, dropout, bidirectional)
    return SequenceClassifier(rnn, hidden, 2 if bidirectional else 1, num_classes)


HEADS = {1: char_lm, 3: sequence_classifier}  # by len(in_shape): token sequences, images


def _build(mode: str, in_shape: tuple[int, ...], num_classes: int, **kw) -> nn.Module:
    if len(in_shape) not in HEADS:
        raise ValueError(f"{mode} takes token sequences (T,) or images (C, H, W), not an input of shape {in_shape}")
    return HEADS[len(in_shape)](mode, tuple(in_shape), num_classes, **kw)


@register_model
def rnn(in_shape: tuple[int, ...], num_classes: int, hidden: int = 256, layers: int = 1, dropout: float = 0.0,
        bidirectional: bool = False, impl: str = "torch") -> nn.Module:
    return _build("rnn", in_shape, num_classes, hidden=hidden, layers=layers, dropout=dropout,
                  bidirectional=bidirectional, impl=impl)


@register_model
def gru(in_shape: tuple[int, ...], num_classes: int, hidden: int = 256, layers: int = 1, dropout: float = 0.0,
        bidirectional: bool = False, impl: str = "torch") -> nn.Module:
    return _build("gru", in_shape, num_classes, hidden=hidden, layers=layers, dropout=dropout,
                  bidirectional=bidirectional, impl=impl)


@register_model
def lstm(in_shape: tuple[int, ...], num_classes: int, hidden: int = 256, layers: int = 1, dropout: float = 0.0,
         bidirectional: bool = False, impl: str = "torch") -> nn.Module:
    return _build("lstm", in_shape, num_classes, hidden=hidden, layers=layers, dropout=dropout,
                  bidirectional=bidirectional, impl=impl)
