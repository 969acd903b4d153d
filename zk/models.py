"""The models the zk level can prove, as ONNX graphs built here from code.

Runs only under `.venv-zk` (it needs onnx and numpy). Each model is a pure function of its
fixed seed, so a rebuild gives the same graph byte for byte. Every graph has a second input
`tag` passed through unchanged to a second output `tag_out`: both are public instances of the
proof, which is how a proof is bound to one shard's lease (computenet/zk.py, `binding`).
"""

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TAG_WORDS = 8  # 16-bit limbs of the 128-bit binding; must match computenet/zk.py
OPSET = 13
IR_VERSION = 8  # what EZKL's ONNX reader accepts


@dataclass(frozen=True)
class Built:
    """A model graph, the inputs the build checks and records as samples, and its training report."""

    onnx: onnx.ModelProto
    input_words: int
    output_words: int
    classes: list[str]
    samples: list[dict]  # {"x": [floats], "label": int}, held out from training
    accuracy: float  # float model on the held-out samples
    weights: np.ndarray
    bias: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The float model's class for each row of x."""
        return np.argmax(x @ self.weights + self.bias, axis=1)


def linear_graph(name: str, weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """logits = x·W + b, and the tag passed through."""
    d, c = weights.shape
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "b"], ["logits"]),
            helper.make_node("Identity", ["tag"], ["tag_out"]),
        ],
        name,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d]),
            helper.make_tensor_value_info("tag", TensorProto.FLOAT, [1, TAG_WORDS]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, c]),
            helper.make_tensor_value_info("tag_out", TensorProto.FLOAT, [1, TAG_WORDS]),
        ],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="computenet")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def softmax_regression(x: np.ndarray, y: np.ndarray, classes: int, steps: int, rate: float):
    """Full-batch gradient descent on the cross-entropy: deterministic, no library beyond NumPy."""
    weights = np.zeros((x.shape[1], classes))
    bias = np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        logits = x @ weights + bias
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot) / len(x)
        weights -= rate * (x.T @ grad)
        bias -= rate * grad.sum(axis=0)
    return weights, bias


def blobs(samples: int = 16) -> Built:
    """A 16-feature, 4-class classifier of Gaussian blobs. Features stay within ±6 so that
    quantising them at scale 7 (steps of 1/128) barely moves a logit."""
    features, classes, per_class = 16, 4, 200
    rng = np.random.default_rng(7)
    centres = rng.uniform(-1.5, 1.5, size=(classes, features))
    x = np.concatenate([rng.normal(c, 1.0, size=(per_class, features)) for c in centres])
    y = np.repeat(np.arange(classes), per_class)
    x = np.clip(x, -6, 6)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    held = len(x) // 4
    weights, bias = softmax_regression(x[held:], y[held:], classes, steps=300, rate=0.1)
    accuracy = float(np.mean(np.argmax(x[:held] @ weights + bias, axis=1) == y[:held]))
    # Round the parameters to float32 so the float model and the graph agree exactly.
    weights, bias = weights.astype(np.float32).astype(np.float64), bias.astype(np.float32).astype(np.float64)
    chosen = [{"x": [round(float(v), 4) for v in x[i]], "label": int(y[i])} for i in range(samples)]
    return Built(
        onnx=linear_graph("blobs", weights, bias),
        input_words=features,
        output_words=classes,
        classes=[f"blob-{i}" for i in range(classes)],
        samples=chosen,
        accuracy=accuracy,
        weights=weights,
        bias=bias,
    )


MODELS = {"blobs": blobs}
