"""A sweep with control flow: one training per value of ``k`` in parallel, their scores collected
in order, and a branch on the best score.

    python examples/sweep/pipeline.py
    kale graph examples/sweep/pipeline.py
    python examples/sweep/pipeline.py --kfp --dry-run    # the same, as a Kubeflow pipeline

Each ``evaluate`` is its own task (``evaluate[0]``, ``evaluate[1]``, ...), run in parallel
locally and as a ``ParallelFor`` on Kubeflow; ``scores`` is the list of their results in the
order of ``ks``; the ``if`` decides, from the best score, whether the model is published (a
condition is evaluated by Python in a small step of its own, so it may read into a step's
result).
"""

import math
import random

from kale.sdk import pipeline, step

SEED = 11


def distance(a, b):
    return math.dist(a[:2], b[:2])


@step
def make_data(samples=400):
    rng = random.Random(SEED)
    rows = []
    for _ in range(samples):
        x, y = rng.uniform(-1, 1), rng.uniform(-1, 1)
        label = int(x * x + y * y < 0.5) if rng.random() > 0.1 else rng.randint(0, 1)
        rows.append((x, y, label))
    cut = samples * 3 // 4
    return rows[:cut], rows[cut:]


@step
def evaluate(train, test, k):
    """Accuracy of a k-nearest-neighbours vote."""
    correct = 0
    for row in test:
        nearest = sorted(train, key=lambda other: distance(row, other))[:k]
        vote = round(sum(other[2] for other in nearest) / k)
        correct += vote == row[2]
    accuracy = correct / len(test)
    print(f"k={k}: accuracy {accuracy:.3f}")
    return accuracy


@step
def choose(ks, scores):
    best = max(range(len(ks)), key=lambda index: scores[index])
    print("scores:", dict(zip(ks, scores, strict=True)))
    return {"k": ks[best], "accuracy": scores[best]}


@step
def publish(choice):
    print(f"publishing k={choice['k']} (accuracy {choice['accuracy']:.3f})")
    return f"published k={choice['k']}"


@step
def needs_work(choice, target):
    print(f"best accuracy {choice['accuracy']:.3f} is below the target {target}")
    return "not published"


@pipeline(name="knn-sweep", experiment="kale-examples")
def sweep(ks=[1, 3, 5, 9, 15], target=0.8):
    train, test = make_data()
    scores = [evaluate(train, test, k) for k in ks]
    choice = choose(ks, scores)
    if choice["accuracy"] >= target:
        publish(choice)
    else:
        needs_work(choice, target)


if __name__ == "__main__":
    run = sweep()
    outputs = getattr(run, "outputs", None)  # with --kfp: a package or a Kubeflow run
    if isinstance(outputs, dict):
        print("outcome:", outputs.get("publish") or outputs.get("needs-work"))
