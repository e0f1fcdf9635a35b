"""LeNet: the tutorial's shapes, and the fused CPU training step's exactness."""

from __future__ import annotations

import pytest
import torch

from blitz.plugins.lenet import build_lenet


def test_tutorial_shapes():
    net = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert shapes["conv1.weight"] == (6, 3, 5, 5) and shapes["conv2.weight"] == (16, 6, 5, 5)
    assert shapes["fc1.weight"] == (120, 400) and shapes["fc2.weight"] == (84, 120) and shapes["fc3.weight"] == (10, 84)
    assert sum(p.numel() for p in net.parameters()) == 62_006


@pytest.mark.parametrize(("batch", "shape", "width"), [(4, (3, 32, 32), 1), (7, (1, 28, 28), 1), (3, (3, 36, 36), 2)])
def test_fused_step_matches_autograd(batch, shape, width):
    torch.manual_seed(0)
    fused = build_lenet(num_classes=5, input_shape=shape, width=width)
    plain = build_lenet(num_classes=5, input_shape=shape, width=width, fused_cpu_step=False)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(batch, *shape)
    x[0] = 0.0  # flat regions tie in max-pooling: gradients must still go where autograd sends them
    x[1] = torch.randint(0, 2, shape).float()  # two-level pixels: repeated patches, ties everywhere
    y = torch.randint(0, 5, (batch,))
    outputs = []
    for net in (fused, plain):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        outputs.append((loss.detach(), {n: p.grad for n, p in net.named_parameters()}))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], rtol=0, atol=1e-6)
    for name in outputs[0][1]:
        torch.testing.assert_close(outputs[0][1][name], outputs[1][1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_fused_step_is_skipped_in_eval_and_under_autocast():
    net = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    assert net(x).grad_fn.name() == "LeNetTrainStepBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x).grad_fn.name() != "LeNetTrainStepBackward"
    net.eval()  # gradients still on: only the mode keeps the fused (training-only) step out
    assert net(x).grad_fn.name() != "LeNetTrainStepBackward"
