"""The Kale SDK guide's `ml_experiment`, made real.

Steps import what they need inside their bodies, use the project's own `local_package` and read
`settings.json` from the project directory, exactly as they will on Kubeflow.

    python examples/ml_experiment/pipeline.py [TIMESTAMP] [ITERATIONS]
    kale graph examples/ml_experiment/pipeline.py --format mermaid
"""

import sys

from kale.sdk import pipeline, step


@step(name="process", retry_count=2, retry_interval="2s", retry_factor=2)
def process(timestamp):
    from local_package import data_processor, fetch_data

    data = fetch_data(timestamp)
    train, validate = data_processor(data)
    return train, validate


@step
def validate(train_data, validate_data):
    from local_package import data_validator

    # data_validator raises an exception if data is not valid
    train, validate = data_validator(train_data, validate_data)
    return train, validate


@step(limits={"memory": "1Gi", "cpu": "1"}, labels={"team": "phoenix"})
def train(train_data, validate_data, training_iterations):
    import json

    from local_package import Model

    with open("settings.json") as handle:
        settings = json.load(handle)
    model = Model(training_iterations, learning_rate=settings["learning_rate"])
    model.fit(train_data)
    accuracy = model.score(validate_data)
    print(f"validation accuracy after {training_iterations} iterations: {accuracy:.3f}")
    if accuracy < settings["min_accuracy"]:
        raise RuntimeError(f"accuracy {accuracy:.3f} is below {settings['min_accuracy']}")
    return accuracy


@pipeline(name="model-training", experiment="project-phoenix", steps_defaults={"timeout": 600})
def ml_experiment(ts="19990312", iters=10):
    train_data, validate_data = process(ts)
    train_valid, validate_valid = validate(train_data, validate_data)
    train(train_valid, validate_valid, iters)


if __name__ == "__main__":
    # As in the guide: values from the command line override the parameters' defaults.
    ts = sys.argv[1] if len(sys.argv) > 1 else "19990312"
    iters = sys.argv[2] if len(sys.argv) > 2 else 100
    ml_experiment(ts, iters)
