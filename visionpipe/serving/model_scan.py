"""Refuse SavedModels whose graphs contain ops that reach outside the model.

Reads ``saved_model.pb`` (or ``saved_model.pbtxt``) only, nothing is loaded or run, and lists
every op in each MetaGraph's graph_def and in every function of its library. A model holding an op from ``DENYLIST`` is
refused unless the op is explicitly allowed (``visionpipe serve --allowed_ops``,
``push.allowed_ops`` for the pipeline's LoadCheck).

``DENYLIST`` is ``saved_model_cli scan``'s list (WriteFile, ReadFile, PrintV2) extended with ops
that touch the file system, spawn or call back into Python, or talk to the network.

Checkpoint ops (SaveV2, RestoreV2, MergeV2Checkpoints, ...) are in every Keras SavedModel: its
saver functions (``saver_def``) hold them. TF2's loader restores variables itself and a server
never runs those functions, so checkpoint ops are allowed in the functions reachable only from
the saver and refused everywhere else (a signature or initializer that writes a "checkpoint"
can write any file).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

# saved_model_cli's _OP_DENYLIST (tensorflow/python/tools/saved_model_cli.py)
SAVED_MODEL_CLI_DENYLIST = frozenset({"WriteFile", "ReadFile", "PrintV2"})

FILE_SYSTEM_OPS = frozenset({
    "MatchingFiles", "Print", "ImmutableConst",
    # summaries and debug dumps write event files
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "FlushSummaryWriter", "CloseSummaryWriter",
    "WriteSummary", "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary",
    "WriteAudioSummary", "WriteGraphSummary", "WriteRawProtoSummary", "ImportEvent",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2",
    # readers and datasets over files
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "TFRecordReader", "TFRecordReaderV2", "TextLineReader",
    "TextLineReaderV2", "WholeFileReader", "WholeFileReaderV2", "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2", "LMDBReader", "LMDBDataset", "ExperimentalLMDBDataset",
    "SqlDataset", "ExperimentalSqlDataset", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset",
    "DatasetToTFRecord", "ExperimentalDatasetToTFRecord", "SaveDataset", "SaveDatasetV2",
    "LoadDataset", "SnapshotDataset", "SnapshotDatasetV2", "CacheDataset", "CacheDatasetV2",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "GenerateVocabRemapping",
    "LoadAndRemapMatrix",
})

PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})

NETWORK_OPS = frozenset({
    "DataServiceDataset", "DataServiceDatasetV2", "DataServiceDatasetV3", "DataServiceDatasetV4",
    "RegisterDataset", "RegisterDatasetV2", "DistributedSave",
    "RpcServer", "RpcServerStart", "RpcServerRegister", "RpcClient", "RpcCall",
    "RpcCheckStatus", "RpcGetValue", "DeleteRpcFutureResource",
    "CollectiveReduce", "CollectiveReduceV2", "CollectiveReduceV3", "CollectiveGather",
    "CollectiveGatherV2", "CollectiveBcastSend", "CollectiveBcastRecv", "CollectiveBcastSendV2",
    "CollectiveBcastRecvV2", "CollectiveAllToAllV2", "CollectiveAllToAllV3",
    "CollectiveInitializeCommunicator", "_Send", "_Recv", "_HostSend", "_HostRecv",
})

# Allowed only in functions reachable from the saver alone (see the module docstring).
CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "Save", "SaveSlices",
                            "Restore", "RestoreSlice"})

DENYLIST = SAVED_MODEL_CLI_DENYLIST | FILE_SYSTEM_OPS | PYTHON_OPS | NETWORK_OPS | CHECKPOINT_OPS


class RefusedModel(ValueError):
    """The SavedModel contains a denied op; the message names the op and where it is."""


@dataclasses.dataclass(frozen=True)
class Finding:
    op: str
    where: str  # "function __inference_..." or "graph node ..."

    def __str__(self) -> str:
        return f"op {self.op} in {self.where}"


def parse_allowed_ops(text: str | Iterable[str] | None) -> frozenset:
    """"A,B" or ["A", "B"] -> {"A", "B"} (blanks ignored)."""
    if not text:
        return frozenset()
    items = text.split(",") if isinstance(text, str) else list(text)
    return frozenset(str(item).strip() for item in items if str(item).strip())


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _called_functions(node, library: Set[str]) -> Set[str]:
    called = {node.op} if node.op in library else set()
    for attr in node.attr.values():
        if attr.HasField("func"):
            called.add(attr.func.name)
        called.update(f.name for f in attr.list.func)
    return called & library


def _closure(start: Set[str], calls: Dict[str, Set[str]]) -> Set[str]:
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(calls.get(name, ()))
    return seen


def _walk_nodes(nodes: Dict[str, object], roots: Iterable[str]) -> Set[str]:
    """Top-level node names evaluated to compute ``roots`` (node or tensor names)."""
    seen, todo = set(), [_node_name(r) for r in roots if r]
    while todo:
        name = todo.pop()
        if name not in seen and name in nodes:
            seen.add(name)
            todo.extend(_node_name(i) for i in nodes[name].input)
    return seen


def _functions_of(nodes: Dict[str, object], names: Set[str], calls: Dict[str, Set[str]],
                  library: Set[str]) -> Set[str]:
    called = set().union(*(_called_functions(nodes[n], library) for n in names)) if names else set()
    return _closure(called, calls)


def _request_roots(meta_graph) -> List[str]:
    """What serving runs: every signature's tensors (TF2's __saved_model_init_op is one) and
    TF1's init ops named in collections."""
    roots = []
    for signature in meta_graph.signature_def.values():
        for info in list(signature.inputs.values()) + list(signature.outputs.values()):
            roots.append(info.name)
    for collection in meta_graph.collection_def.values():
        roots.extend(collection.node_list.value)
    return roots


def scan_meta_graph(meta_graph, denied: frozenset) -> List[Finding]:
    graph_def = meta_graph.graph_def
    functions = {f.signature.name: f for f in graph_def.library.function}
    library = set(functions)
    calls = {name: set().union(*(_called_functions(n, library) for n in f.node_def))
             if f.node_def else set() for name, f in functions.items()}
    nodes = {node.name: node for node in graph_def.node}
    saver = meta_graph.saver_def
    saver_roots = [saver.save_tensor_name, saver.restore_op_name] if meta_graph.HasField("saver_def") else []
    # Whatever a signature, an init op or any top-level node outside the saver reaches is not
    # saver-only, even if saver_def points at it too (a model cannot launder a signature that
    # way). Functions nothing top-level calls (the object graph's restored functions) count as
    # callable, not as saver-only.
    request_nodes = _walk_nodes(nodes, _request_roots(meta_graph))
    saver_nodes = _walk_nodes(nodes, saver_roots) - request_nodes
    other_nodes = set(nodes) - saver_nodes
    saver_only = (_functions_of(nodes, saver_nodes, calls, library)
                  - _functions_of(nodes, other_nodes, calls, library))

    findings = []
    for node in graph_def.node:
        if node.op in denied and not (node.op in CHECKPOINT_OPS and node.name in saver_nodes):
            findings.append(Finding(node.op, f"graph node {node.name}"))
    for name in sorted(functions):
        for node in functions[name].node_def:
            if node.op in denied and not (node.op in CHECKPOINT_OPS and name in saver_only):
                findings.append(Finding(node.op, f"function {name}"))
    return findings


def scan_saved_model(export_dir: str | Path, allowed_ops: Iterable[str] = ()) -> List[Finding]:
    """Every denied op (not in ``allowed_ops``) in the SavedModel at ``export_dir``."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = Path(export_dir) / "saved_model.pb"
    text_path = Path(export_dir) / "saved_model.pbtxt"
    try:
        if not pb_path.exists() and text_path.exists():
            from google.protobuf import text_format

            pb_path = text_path
            saved_model = text_format.Parse(text_path.read_text(), saved_model_pb2.SavedModel())
        else:
            saved_model = saved_model_pb2.SavedModel.FromString(pb_path.read_bytes())
    except Exception as err:  # DecodeError, ParseError or OSError
        raise RefusedModel(f"{pb_path}: cannot parse SavedModel: {err}") from None
    denied = DENYLIST - parse_allowed_ops(allowed_ops)
    findings: List[Finding] = []
    for meta_graph in saved_model.meta_graphs:
        for finding in scan_meta_graph(meta_graph, denied):
            if finding not in findings:
                findings.append(finding)
    return findings


def check_saved_model(export_dir: str | Path, allowed_ops: Iterable[str] = ()) -> None:
    """Raise RefusedModel naming the first denied op (and how many others there are)."""
    findings = scan_saved_model(export_dir, allowed_ops)
    if findings:
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise RefusedModel(f"refused by the model scan: {findings[0]}{more}; allow it with "
                           f"--allowed_ops / push.allowed_ops if it is intended")


def denied_ops(allowed_ops: Optional[Iterable[str]] = None) -> List[str]:
    return sorted(DENYLIST - parse_allowed_ops(allowed_ops))
