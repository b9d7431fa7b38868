"""ONNX export: the model's own graph, the fraud-class probability taken by name (never the
label output), the calibration appended as ONNX nodes, one output ``fraud_probability``
[N]. Parity with the native model is checked on the test set."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.calibration import Calibrator
from training.errors import TrainingError
from training.models import ONNX_OPSET, Fitted

OUTPUT = "fraud_probability"
RAW_OUTPUT = "raw_probability"  # before calibration
INPUT = "input"


def _const(graph: onnx.GraphProto, name: str, value: Any, dtype: Any = np.float32) -> str:
    graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name))
    return name


def _probabilities_output(model: onnx.ModelProto) -> str:
    for out in model.graph.output:
        if out.name == "probabilities" or "prob" in out.name.lower():
            return out.name
    raise TrainingError(f"the converted model has no probability output (outputs: "
                        f"{[o.name for o in model.graph.output]})")


def build(fitted: Fitted, n_features: int, calibrator: Calibrator, metadata: dict[str, Any]) -> onnx.ModelProto:
    model = fitted.to_onnx(n_features)
    if not any(op.domain in ("", "ai.onnx") for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", ONNX_OPSET))
    g = model.graph
    probs = _probabilities_output(model)
    nodes = [helper.make_node("Gather", [probs, _const(g, "cls1", 1, np.int64)], ["p_raw"], axis=1)]
    last = "p_raw"
    if calibrator.method == "sigmoid":
        nodes += [helper.make_node("Mul", [last, _const(g, "cal_a", calibrator.a)], ["cal_ap"]),
                  helper.make_node("Add", ["cal_ap", _const(g, "cal_b", calibrator.b)], ["cal_z"]),
                  helper.make_node("Neg", ["cal_z"], ["cal_nz"]),
                  helper.make_node("Sigmoid", ["cal_nz"], ["p_cal"])]
        last = "p_cal"
    elif calibrator.method == "isotonic":
        assert calibrator.x is not None and calibrator.y is not None
        x, y, f8 = calibrator.x, calibrator.y, np.float64
        k = len(x)
        # Only operators valid from opset 9 on (converters pin different opsets); in double
        # precision, as the native calibrator, so steep steps do not magnify rounding.
        nodes += [
            helper.make_node("Cast", [last], ["iso_p64"], to=TensorProto.DOUBLE),
            helper.make_node("Max", ["iso_p64", _const(g, "iso_lo", x[0], f8)], ["iso_xl"]),
            helper.make_node("Min", ["iso_xl", _const(g, "iso_hi", x[-1], f8)], ["iso_xc"]),
            helper.make_node("Reshape", ["iso_xc", _const(g, "iso_colshape", [-1, 1], np.int64)], ["iso_col"]),
            helper.make_node("Less", ["iso_col", _const(g, "iso_x", x, f8)], ["iso_lt"]),
            helper.make_node("Cast", ["iso_lt"], ["iso_ltf"], to=TensorProto.DOUBLE),
            helper.make_node("MatMul", ["iso_ltf", _const(g, "iso_ones", np.ones(k), f8)], ["iso_nlt"]),
            # knots at or below x = k - (knots above x); segment j = clip(that - 1, 0, k - 2)
            helper.make_node("Sub", [_const(g, "iso_k1", k - 1, f8), "iso_nlt"], ["iso_j0"]),
            helper.make_node("Max", ["iso_j0", _const(g, "iso_zero", 0.0, f8)], ["iso_j0l"]),
            helper.make_node("Min", ["iso_j0l", _const(g, "iso_kmax", k - 2, f8)], ["iso_jf"]),
            helper.make_node("Cast", ["iso_jf"], ["iso_j"], to=TensorProto.INT64),
            helper.make_node("Add", ["iso_j", _const(g, "iso_one", 1, np.int64)], ["iso_j1"]),
            helper.make_node("Gather", ["iso_x", "iso_j"], ["iso_x0"]),
            helper.make_node("Gather", ["iso_x", "iso_j1"], ["iso_x1"]),
            helper.make_node("Gather", [_const(g, "iso_y", y, f8), "iso_j"], ["iso_y0"]),
            helper.make_node("Gather", ["iso_y", "iso_j1"], ["iso_y1"]),
            helper.make_node("Sub", ["iso_x1", "iso_x0"], ["iso_dx"]),
            helper.make_node("Sub", ["iso_y1", "iso_y0"], ["iso_dy"]),
            helper.make_node("Sub", ["iso_xc", "iso_x0"], ["iso_off"]),
            helper.make_node("Max", ["iso_dx", _const(g, "iso_eps", 1e-12, f8)], ["iso_dxs"]),
            helper.make_node("Div", ["iso_off", "iso_dxs"], ["iso_t"]),
            helper.make_node("Mul", ["iso_t", "iso_dy"], ["iso_inc"]),
            helper.make_node("Add", ["iso_y0", "iso_inc"], ["iso_out"]),
            helper.make_node("Cast", ["iso_out"], ["p_cal"], to=TensorProto.FLOAT),
        ]
        last = "p_cal"
    nodes += [helper.make_node("Identity", [last], [OUTPUT]), helper.make_node("Identity", ["p_raw"], [RAW_OUTPUT])]
    g.node.extend(nodes)
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None]),
                     helper.make_tensor_value_info(RAW_OUTPUT, TensorProto.FLOAT, [None])])
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    return model


def session(model: onnx.ModelProto | bytes) -> Any:
    import onnxruntime as ort

    raw = model if isinstance(model, bytes) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(raw, opts, providers=["CPUExecutionProvider"])


def score(sess: Any, X: np.ndarray) -> np.ndarray:  # noqa: N803
    return sess.run([OUTPUT], {INPUT: np.ascontiguousarray(X, dtype=np.float32)})[0].astype(np.float64)


def parity(model: onnx.ModelProto, fitted: Fitted, calibrator: Calibrator, X: np.ndarray,  # noqa: N803
           tol: float = 1e-5) -> dict[str, float]:
    """Largest differences between the ONNX graph and the native model on X; raises above ``tol``.

    Two checks: the model part (ONNX raw probability vs native ``predict_proba``) and the
    calibration part (ONNX calibrated output vs the native calibrator applied to the same
    raw probability). End to end, a steep isotonic step can magnify the float32 rounding of
    the trees (3e-7) past 1e-5; that figure is reported as ``end_to_end`` too."""
    if not len(X):
        return {"model": 0.0, "calibration": 0.0, "end_to_end": 0.0}
    cal, raw = session(model).run([OUTPUT, RAW_OUTPUT], {INPUT: np.ascontiguousarray(X, dtype=np.float32)})
    native_raw = fitted.predict(X)
    out = {"model": float(np.max(np.abs(raw - native_raw))),
           "calibration": float(np.max(np.abs(cal - calibrator(raw.astype(np.float64))))),
           "end_to_end": float(np.max(np.abs(cal - calibrator(native_raw))))}
    for part in ("model", "calibration"):
        if out[part] > tol:
            raise TrainingError(f"ONNX and native scores differ by up to {out[part]:.3g} (> {tol:g}) in the {part} "
                                "part on the test set; not registering this model")
    return out


def sha256(model: onnx.ModelProto | bytes) -> str:
    raw = model if isinstance(model, bytes) else model.SerializeToString()
    return hashlib.sha256(raw).hexdigest()
