"""A small logistic-regression model trained by gradient descent, in plain Python."""

import math


class Model:
    def __init__(self, iterations, learning_rate=0.1):
        self.iterations = int(iterations)
        self.learning_rate = learning_rate
        self.weights = [0.0, 0.0, 0.0]  # bias, x1, x2

    def _probability(self, x1, x2):
        z = self.weights[0] + self.weights[1] * x1 + self.weights[2] * x2
        return 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))

    def fit(self, rows):
        for _ in range(self.iterations):
            gradient = [0.0, 0.0, 0.0]
            for x1, x2, label in rows:
                error = self._probability(x1, x2) - label
                gradient[0] += error
                gradient[1] += error * x1
                gradient[2] += error * x2
            for i in range(3):
                self.weights[i] -= self.learning_rate * gradient[i] / len(rows)
        return self

    def score(self, rows):
        correct = sum((self._probability(x1, x2) >= 0.5) == bool(label) for x1, x2, label in rows)
        return correct / len(rows)
