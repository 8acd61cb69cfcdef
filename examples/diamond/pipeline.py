"""The Kale SDK guide's diamond: two trainings that depend on the same data run in parallel, and a
final step compares them.

    python examples/diamond/pipeline.py
    kale graph examples/diamond/pipeline.py --format dot | dot -Tpng > diamond.png
"""

from kale.sdk import pipeline, step


@step
def get_data(samples=600, seed=7):
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(samples):
        label = rng.random() < 0.5
        x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
        if label:  # the positive class lies outside a circle: not linearly separable
            scale = 1.6 + abs(rng.gauss(0, 0.4))
            norm = (x1 * x1 + x2 * x2) ** 0.5 or 1.0
            x1, x2 = x1 / norm * scale, x2 / norm * scale
        rows.append((x1, x2, int(label)))
    cut = samples * 3 // 4
    return {"train": rows[:cut], "test": rows[cut:]}


@step(timeout="5m")
def train_and_predict_random_forest(data, trees=25, seed=1):
    """Bagged decision stumps on the squared radius and both coordinates."""
    import random

    rng = random.Random(seed)

    def features(row):
        return (row[0], row[1], row[0] ** 2 + row[1] ** 2)

    def fit_stump(rows):
        best = (2.0, 0, 0.0, 1)
        for feature in range(3):
            for threshold in sorted({features(row)[feature] for row in rows})[::7]:
                for sign in (1, -1):
                    wrong = sum((sign * (features(r)[feature] - threshold) > 0) != r[2]
                                for r in rows)
                    best = min(best, (wrong / len(rows), feature, threshold, sign))
        return best[1:]

    forest = [fit_stump([rng.choice(data["train"]) for _ in data["train"]]) for _ in range(trees)]

    def predict(row):
        votes = sum(sign * (features(row)[f] - t) > 0 for f, t, sign in forest)
        return int(votes * 2 > len(forest))

    accuracy = sum(predict(row) == row[2] for row in data["test"]) / len(data["test"])
    return {"model": "random forest", "accuracy": accuracy}


@step(timeout="5m")
def train_and_predict_svm(data, epochs=30, regularization=0.01):
    """A linear SVM trained by sub-gradient descent on the hinge loss."""
    weights, bias = [0.0, 0.0], 0.0
    for epoch in range(1, epochs + 1):
        rate = 1.0 / (regularization * epoch * len(data["train"]))
        for x1, x2, label in data["train"]:
            y = 1 if label else -1
            margin = y * (weights[0] * x1 + weights[1] * x2 + bias)
            weights = [w * (1 - rate * regularization) for w in weights]
            if margin < 1:
                weights = [weights[0] + rate * y * x1, weights[1] + rate * y * x2]
                bias += rate * y
    correct = sum(
        ((weights[0] * x1 + weights[1] * x2 + bias) > 0) == bool(label)
        for x1, x2, label in data["test"]
    )
    return {"model": "linear svm", "accuracy": correct / len(data["test"])}


@step
def compare(res1, res2):
    best = max(res1, res2, key=lambda result: result["accuracy"])
    for result in (res1, res2):
        print(f"{result['model']:>14}: {result['accuracy']:.3f}")
    print(f"best: {best['model']}")
    return best


@pipeline(name="parallel-steps", experiment="cool-pipelines")
def multiple_trainings():
    data = get_data()
    res1 = train_and_predict_random_forest(data)
    res2 = train_and_predict_svm(data)
    compare(res1, res2)


if __name__ == "__main__":
    multiple_trainings()
