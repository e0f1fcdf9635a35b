"""LeNet: the tutorial's shapes, and the exactness of its fused CPU step and of its direct gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blitz.plugins.lenet import LeNet, build_lenet


def test_tutorial_shapes():
    net = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert shapes["conv1.weight"] == (6, 3, 5, 5) and shapes["conv2.weight"] == (16, 6, 5, 5)
    assert shapes["fc1.weight"] == (120, 400) and shapes["fc2.weight"] == (84, 120) and shapes["fc3.weight"] == (10, 84)
    assert sum(p.numel() for p in net.parameters()) == 62_006


def tutorial_forward(net: LeNet, x: torch.Tensor) -> torch.Tensor:
    """The tutorial's ``Net.forward``: ReLU before each max-pool."""
    x = net.pool(torch.relu(net.conv1(x)))
    x = net.pool(torch.relu(net.conv2(x)))
    x = torch.flatten(x, 1)
    return net.fc3(torch.relu(net.fc2(torch.relu(net.fc1(x)))))


@pytest.mark.parametrize("channels_last", [False, True])
def test_pooling_before_relu_gives_the_tutorials_numbers_and_gradients_bit_for_bit(channels_last: bool) -> None:
    torch.manual_seed(0)
    net = LeNet(fused_cpu_step=False)
    x = torch.randn(64, 3, 32, 32)
    x[:8] = x[:8].round()  # ties inside pooling windows, positive and negative
    x[8:10] = 0.0  # whole windows equal
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ours, theirs = net(x), tutorial_forward(net, x)
    assert torch.equal(ours, theirs)
    grad, wrt = torch.randn_like(ours), [x, *net.parameters()]
    ours_grads, theirs_grads = torch.autograd.grad(ours, wrt, grad), torch.autograd.grad(theirs, wrt, grad)
    assert all(torch.equal(a, b) for a, b in zip(ours_grads, theirs_grads, strict=True))


@pytest.mark.parametrize("batch", [16, 17, 500])
def test_evaluation_in_channels_last_gives_the_nchw_numbers(batch: int) -> None:
    """In eval mode on a CPU LeNet runs large batches channels-last (2x faster): the same numbers.
    (The same bits on the Intel Xeon measured; oneDNN may sum in another order on other CPUs.)"""
    torch.manual_seed(0)
    net = LeNet().eval()
    x = torch.randn(batch, 3, 32, 32)
    x[:8] = x[:8].round()  # ties inside pooling windows
    layouts: list[bool] = []
    net.conv1.register_forward_pre_hook(lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.inference_mode():
        torch.testing.assert_close(net(x), tutorial_forward(net, x), rtol=1e-5, atol=1e-6)
    assert layouts == [batch > 16, False]  # LeNet's forward, then the tutorial's on the NCHW input


# The first layer's columns go to bmm in two parts, of whole images (even batches) or of each
# image's rows (odd batches where the output's side divides by 4), else in one: each layout here.
KERNEL_CASES = [
    (4, (3, 32, 32), 1), (7, (1, 28, 28), 1), (3, (3, 36, 36), 2), (2, (3, 32, 32), 1), (5, (3, 31, 31), 1),
    (16, (3, 32, 32), 1), (6, (3, 30, 30), 1), (4, (3, 33, 33), 1),
]


@pytest.mark.parametrize(("batch", "shape", "width"), KERNEL_CASES)
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


def _twins(shape=(3, 32, 32), width=1, num_classes=5):
    torch.manual_seed(0)
    direct = build_lenet(num_classes=num_classes, input_shape=shape, width=width)
    plain = build_lenet(num_classes=num_classes, input_shape=shape, width=width, fused_cpu_step=False)
    plain.load_state_dict(direct.state_dict())
    return direct, plain


@pytest.mark.parametrize(("batch", "shape", "width"), [*KERNEL_CASES, (1, (3, 30, 30), 1)])
def test_direct_gradients_match_autograd(batch, shape, width):
    direct, plain = _twins(shape, width)
    x = torch.randn(batch, *shape)
    x[0] = 0.0  # ties in max-pooling, as above
    y = torch.randint(0, 5, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    loss = direct.direct_gradients(x, y, loss_fn)
    expected = loss_fn(plain(x), y)
    expected.backward()
    assert loss is not None and loss.requires_grad is False
    torch.testing.assert_close(loss, expected.detach(), rtol=0, atol=1e-6)
    for (name, p), q in zip(direct.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_direct_gradients_equal_the_fused_autograd_node_bit_for_bit():
    direct, fused = _twins()
    fused.fused_cpu_step = True
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    loss_fn = nn.CrossEntropyLoss()
    loss = direct.direct_gradients(x, y, loss_fn)
    expected = loss_fn(fused(x), y)
    expected.backward()
    assert torch.equal(loss, expected.detach())
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(direct.parameters(), fused.parameters()))


def test_direct_gradients_accumulate_and_skip_frozen_parameters():
    direct, plain = _twins()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    for net in (direct, plain):
        net.conv1.weight.requires_grad_(False)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(2):  # the second call adds to .grad, as backward() does
        direct.direct_gradients(x, y, loss_fn)
        loss_fn(plain(x), y).backward()
    assert direct.conv1.weight.grad is None
    for p, q in zip(direct.parameters(), plain.parameters()):
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)


def test_direct_gradients_are_ordinary_tensors_reused_step_after_step():
    """The step runs under inference_mode, but its gradients must stay changeable in place
    (gradient clipping, an optimizer's own updates), and be right again after zero_grad."""
    direct, plain = _twins()
    loss_fn = nn.CrossEntropyLoss()
    kept = None
    for step in range(3):
        x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
        for net in (direct, plain):
            net.zero_grad(set_to_none=True)
        loss = direct.direct_gradients(x, y, loss_fn)
        loss_fn(plain(x), y).backward()
        grads = [p.grad for p in direct.parameters()]
        assert not any(g.is_inference() for g in grads)
        if kept is not None:  # the same tensors: no allocation per step
            assert all(g is k for g, k in zip(grads, kept))
        kept = grads
        for p, q in zip(direct.parameters(), plain.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)
        torch.nn.utils.clip_grad_norm_(direct.parameters(), 0.1)  # in place, outside inference_mode
        assert float(loss * 2) > 0  # the loss can be computed with outside it too


def test_direct_gradients_add_to_a_gradient_some_parameters_already_have():
    direct, plain = _twins()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    loss_fn = nn.CrossEntropyLoss()
    for net in (direct, plain):
        net.fc2.weight.grad = torch.ones_like(net.fc2.weight)
        net.conv1.bias.grad = torch.full_like(net.conv1.bias, -2.0)
    direct.direct_gradients(x, y, loss_fn)
    loss_fn(plain(x), y).backward()
    for (name, p), q in zip(direct.named_parameters(), plain.parameters()):
        assert not p.grad.is_inference(), name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("copy_with", ["deepcopy", "pickle"])
def test_a_copied_lenet_gets_gradient_buffers_of_its_own(copy_with):
    import copy
    import io

    net = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    net.direct_gradients(x, y, loss_fn)
    before = [p.grad.clone() for p in net.parameters()]
    if copy_with == "deepcopy":
        twin = copy.deepcopy(net)
    else:
        buffer = io.BytesIO()
        torch.save(net, buffer)
        twin = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    twin.zero_grad(set_to_none=True)
    twin.direct_gradients(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)), loss_fn)
    assert all(torch.equal(p.grad, b) for p, b in zip(net.parameters(), before))  # the original's untouched
    assert not any(torch.equal(p.grad, b) for p, b in zip(twin.parameters(), before))


@pytest.mark.parametrize(
    "case",
    ["label smoothing", "class weights", "summed loss", "another loss", "eval mode", "autocast", "large batch",
     "fused step off", "forward hook", "float64"],
)
def test_direct_gradients_decline_what_they_do_not_compute(case):
    net = build_lenet(num_classes=10, input_shape=(3, 32, 32), fused_cpu_step=case != "fused step off")
    x, y = torch.randn(17 if case == "large batch" else 4, 3, 32, 32), torch.randint(0, 10, (17 if case == "large batch" else 4,))
    loss_fn = {
        "label smoothing": nn.CrossEntropyLoss(label_smoothing=0.1),
        "class weights": nn.CrossEntropyLoss(weight=torch.ones(10)),
        "summed loss": nn.CrossEntropyLoss(reduction="sum"),
        "another loss": nn.MultiMarginLoss(),
    }.get(case, nn.CrossEntropyLoss())
    if case == "eval mode":
        net.eval()
    if case == "forward hook":
        net.register_forward_hook(lambda *_: None)
    if case == "float64":
        net.double()
        x = x.double()
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert net.direct_gradients(x, y, loss_fn) is None
    else:
        assert net.direct_gradients(x, y, loss_fn) is None
    assert all(p.grad is None for p in net.parameters())


def test_direct_gradients_raise_cross_entropys_error_for_a_label_out_of_range():
    net = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    with pytest.raises(IndexError, match="out of bounds"):
        net.direct_gradients(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 12, 3]), nn.CrossEntropyLoss())


class HalvedNet(LeNet):
    """A LeNet subclass with its own forward: training must run that forward, not LeNet's kernels."""

    def forward(self, x):
        return super().forward(x) * 0.5


def test_direct_gradients_leave_a_subclass_with_its_own_forward_to_autograd():
    net = HalvedNet(num_classes=10)
    assert net.direct_gradients(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)), nn.CrossEntropyLoss()) is None


def test_direct_gradients_leave_probability_targets_to_autograd():
    net = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    soft = torch.softmax(torch.randn(4, 10), 1)
    assert net.direct_gradients(torch.randn(4, 3, 32, 32), soft, nn.CrossEntropyLoss()) is None


@pytest.mark.parametrize("hook", ["tensor hook", "post-accumulate hook", "global forward hook", "loss hook", "all frozen"])
def test_direct_gradients_leave_hooked_steps_to_autograd(hook):
    """A gradient clipper or logger hooked on a parameter, the loss or every module must still run."""
    net = build_lenet(num_classes=10, input_shape=(3, 32, 32))
    loss_fn = nn.CrossEntropyLoss()
    handle = None
    if hook == "tensor hook":
        handle = net.fc3.weight.register_hook(lambda g: g.clamp(-1e-3, 1e-3))
    elif hook == "post-accumulate hook":
        handle = net.fc3.weight.register_post_accumulate_grad_hook(lambda p: None)
    elif hook == "global forward hook":
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *_: None)
    elif hook == "loss hook":
        handle = loss_fn.register_forward_hook(lambda *_: None)
    else:
        net.requires_grad_(False)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    try:
        assert net.direct_gradients(x, y, loss_fn) is None
    finally:
        if handle is not None:
            handle.remove()
    if hook != "all frozen":  # the hook gone, the direct path is back
        assert net.direct_gradients(x, y, loss_fn) is not None


def test_direct_gradients_after_the_model_moved_between_dtypes_and_layouts():
    direct, plain = _twins()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    direct.direct_gradients(x, y, loss_fn)
    for move in (lambda m: m.double(), lambda m: m.to(memory_format=torch.channels_last)):
        move(direct)  # converts the .grad tensors too: the buffers they were
        direct.zero_grad()
        direct.float().to(memory_format=torch.contiguous_format)
        plain.zero_grad()
        loss = direct.direct_gradients(x, y, loss_fn)
        loss += 1.0  # an ordinary tensor, not an inference one
        loss_fn(plain(x), y).backward()
        for p, q in zip(direct.parameters(), plain.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)


def test_channels_last_weights_go_through_autograd_and_lean_sgd_keeps_layouts_apart():
    """A contiguous gradient for a channels-last weight made fused SGD update each weight with
    another weight's gradient (it walks both in memory order)."""
    from blitz.plugins.optimizers import LeanSGD

    net = build_lenet(num_classes=5, input_shape=(3, 32, 32)).to(memory_format=torch.channels_last)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    assert net.direct_gradients(x, y, nn.CrossEntropyLoss()) is None
    weight = torch.randn(6, 3, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(6, 3, 5, 5)  # contiguous: another layout than the weight's
    expected = weight.detach() - 0.1 * grad
    for fused, with_closure in ((True, False), (False, False), (True, True)):
        w = weight.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        if with_closure:  # the gradient made inside the closure must be laid out too
            LeanSGD([w], lr=0.1, momentum=0.0, fused=fused).step(lambda: setattr(w, "grad", grad.clone()))
        else:
            w.grad = grad.clone()
            LeanSGD([w], lr=0.1, momentum=0.0, fused=fused).step()
        torch.testing.assert_close(w.detach(), expected, rtol=1e-6, atol=1e-6)  # scrambled: off by ~0.1


# every batch the direct step takes at the tutorial's size; other sizes in every layout (_parts):
# MKL's way of splitting a product between threads changes with the shapes, batch by batch
SAME_BITS_CASES = [(batch, 32, 1) for batch in range(1, 17)] + [
    (16, 28, 1), (2, 30, 1), (3, 30, 1), (5, 31, 1), (9, 36, 2), (6, 32, 2),
]


@pytest.mark.parametrize(("batch", "size", "width"), SAME_BITS_CASES)
def test_training_gives_the_same_bits_on_one_thread_or_two(batch, size, width):
    """--cpu-threads auto switches between 1 and 2 threads mid-run: the direct step must not care."""
    from blitz.plugins.optimizers import LeanSGD

    def train(threads: int) -> list[torch.Tensor]:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        net = build_lenet(num_classes=10, input_shape=(3, size, size), width=width)
        optimizer = LeanSGD(net.parameters(), lr=0.05, momentum=0.9, fused=True)
        data = torch.Generator().manual_seed(1)
        for _ in range(20):
            x, y = torch.randn(batch, 3, size, size, generator=data), torch.randint(0, 10, (batch,), generator=data)
            optimizer.zero_grad(set_to_none=True)
            assert net.direct_gradients(x, y, nn.CrossEntropyLoss()) is not None
            optimizer.step()
        return [p.detach().clone() for p in net.parameters()]

    before = torch.get_num_threads()
    try:
        one, two = train(1), train(2)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
