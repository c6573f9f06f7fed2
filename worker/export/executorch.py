"""executorch: a .pte program with the XNNPACK delegate (PyTorch Mobile's successor).

The program describes itself like every other format: each key of the shared metadata
(labels, image_size, input, output, mean, std, class_thresholds, …) is a constant method
returning its string, so an app reads `program.load_method("labels")` without the manifest.
"""

from __future__ import annotations

from typing import Any

import torch

from worker.export.checks import parity, raw_file_check, with_problems, with_raw_files
from worker.export.context import ExportContext, Exported
from worker.export.manifest import Check

FILE_NAME = "model.pte"
DELEGATE = "XnnpackBackend"


def export(ctx: ExportContext) -> Exported:
    """torch.export the wrapper at batch 1, lower to XNNPACK, write out_dir/model.pte."""
    # Imported here: executorch takes seconds to import and only this format needs it.
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    # A static batch of 1 (what an app runs): memory is planned ahead for exactly that
    # shape, and every compute op lands in one XNNPACK subgraph.
    program = torch.export.export(ctx.wrapper, (ctx.sample(1),))
    edge = to_edge_transform_and_lower(
        program, partitioner=[XnnpackPartitioner()], constant_methods=ctx.string_metadata()
    )
    delegation = get_delegation_info(edge.exported_program().graph_module)
    path = ctx.out_dir / FILE_NAME
    path.write_bytes(edge.to_executorch().buffer)
    return Exported(
        files=[(path, "model")],
        details={
            "delegate": DELEGATE,
            "input_shape": [1, 3, ctx.image_size, ctx.image_size],
            "delegated_subgraphs": delegation.num_delegated_subgraphs,
            "delegated_nodes": delegation.num_delegated_nodes,
            "non_delegated_ops": _non_delegated(delegation),
            "metadata_methods": sorted(ctx.string_metadata()),
        },
    )


def check(ctx: ExportContext, exported: Exported) -> Check:
    """Run the .pte in the ExecuTorch runtime, one image at a time, and compare."""
    from executorch.runtime import Runtime

    runtime = Runtime.get()
    registered = list(runtime.backend_registry.registered_backend_names)
    program = runtime.load_program(exported.model_path)
    method = program.load_method("forward")
    outputs = [method.execute([image.unsqueeze(0).contiguous()])[0] for image in ctx.check_images]
    result = parity(
        "executorch runtime (pybindings)",
        ctx.reference,
        torch.cat(outputs),
        details={"batch": 1, "registered_backends": registered},
    )
    raw = raw_file_check(
        ctx,
        lambda batch: method.execute([torch.from_numpy(batch).contiguous()])[0],
        "executorch runtime (pybindings)",
    )
    # The delegate's id is stored in the program's delegate table: the shipped file uses it.
    problems = []
    if DELEGATE.encode() not in exported.model_path.read_bytes():
        problems.append(f"the program has no {DELEGATE} delegate")
    problems += metadata_problems(program, ctx.string_metadata())
    return with_raw_files(with_problems(result, problems), raw)


def metadata_problems(program: Any, metadata: dict[str, str]) -> list[str]:
    """What an app reads back: every metadata method, returning exactly its string."""
    problems = []
    for key, value in metadata.items():
        if key not in program.method_names:
            problems.append(f"the program has no '{key}' method")
        elif program.load_method(key).execute([]) != [value]:
            problems.append(f"the program's '{key}' method returns another value")
    return problems


def _non_delegated(delegation: Any) -> dict[str, int]:
    """Ops left outside XNNPACK (dim-order copies and getitem are expected and harmless)."""
    frame = delegation.get_operator_delegation_dataframe()
    counts = {}
    for row in frame.to_dict("records"):
        count = int(row.get("occurrences_in_non_delegated_graphs", 0))
        if row.get("op_type") != "Total" and count:
            counts[str(row["op_type"])] = count
    return counts
