"""The PyTorch 60-minute-blitz CIFAR-10 training loop, reimplemented plainly.

This is baseline "(a)" for ``make bench``: the tutorial's own Net, data
pipeline (torchvision CIFAR10 + PIL transforms, batch 4, num_workers=2),
CrossEntropyLoss, SGD(lr=0.001, momentum=0.9), ``loss.item()`` every step and
the running-loss print every 2000 mini-batches, then the tutorial's overall
and per-class test accuracy. It adds only argparse flags, timing and an
optional JSON result file so blitz can be compared against it side by side.

Usage:
    python bench/tutorial_loop.py --data-root /work/shared/data/cifar10 \
        --epochs 2 --json /tmp/tutorial_loop.json
"""

from __future__ import annotations

import argparse
import json
import time

_WALL_START = time.perf_counter()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.optim as optim  # noqa: E402
import torchvision  # noqa: E402
import torchvision.transforms as transforms  # noqa: E402

classes = ('plane', 'car', 'bird', 'cat',
           'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


class LocalCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10, minus the md5 check (the local copy's sums differ)."""

    def _check_integrity(self) -> bool:
        return True


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', required=True,
                        help='folder containing cifar-10-batches-py/')
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--limit-steps', type=int, default=None,
                        help='stop each epoch after N steps (smoke runs)')
    parser.add_argument('--json', default=None, help='write results to FILE')
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)

    transform = transforms.Compose(
        [transforms.ToTensor(),
         transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

    trainset = LocalCIFAR10(root=args.data_root, train=True,
                            download=False, transform=transform)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=4,
                                              shuffle=True, num_workers=2)

    testset = LocalCIFAR10(root=args.data_root, train=False,
                           download=False, transform=transform)
    testloader = torch.utils.data.DataLoader(testset, batch_size=4,
                                             shuffle=False, num_workers=2)

    net = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)

    images_trained = 0
    train_start = time.perf_counter()
    for epoch in range(args.epochs):  # loop over the dataset multiple times

        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            if args.limit_steps is not None and i >= args.limit_steps:
                break
            # get the inputs; data is a list of [inputs, labels]
            inputs, labels = data

            # zero the parameter gradients
            optimizer.zero_grad()

            # forward + backward + optimize
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            images_trained += labels.size(0)

            # print statistics
            running_loss += loss.item()
            if i % 2000 == 1999:    # print every 2000 mini-batches
                print('[%d, %5d] loss: %.3f' %
                      (epoch + 1, i + 1, running_loss / 2000))
                running_loss = 0.0
    train_seconds = time.perf_counter() - train_start

    print('Finished Training')

    correct = 0
    total = 0
    with torch.no_grad():
        for data in testloader:
            images, labels = data
            outputs = net(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()

    print('Accuracy of the network on the %d test images: %d %%' % (
        total, 100 * correct / total))

    class_correct = list(0. for i in range(10))
    class_total = list(0. for i in range(10))
    with torch.no_grad():
        for data in testloader:
            images, labels = data
            outputs = net(images)
            _, predicted = torch.max(outputs, 1)
            c = (predicted == labels).squeeze()
            for i in range(labels.size(0)):
                label = labels[i]
                class_correct[label] += c[i].item()
                class_total[label] += 1

    for i in range(10):
        print('Accuracy of %5s : %2d %%' % (
            classes[i], 100 * class_correct[i] / class_total[i]))

    images_per_s = images_trained / train_seconds
    wall_seconds = time.perf_counter() - _WALL_START
    print('train: %d images in %.1f s = %.1f images/s; wall %.1f s' % (
        images_trained, train_seconds, images_per_s, wall_seconds))

    if args.json:
        result = {
            'name': 'tutorial-loop',
            'images_per_s': images_per_s,
            'train_seconds': train_seconds,
            'wall_seconds': wall_seconds,
            'test_accuracy': correct / total,
            'epochs': args.epochs,
            'torch': torch.__version__,
            'device': 'cpu',
        }
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
            f.write('\n')


if __name__ == '__main__':
    main()
