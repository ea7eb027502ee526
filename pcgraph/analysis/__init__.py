"""Graph analysis: pure functions over networkx (no torch) — cycles, roots, depths, Prop. 3.2, SMMs.

Everything here depends on the graph *and* the clamp set: which nodes are fixed to data decides
whether forward initialization is possible (Proposition 3.2 of the paper) and what it costs.

- :mod:`pcgraph.analysis.graph` — clamp sets, cycles, roots, forward levels, Proposition 3.2,
  memory targets, the error front;
- :mod:`pcgraph.analysis.cost` — what each initialization needs, ``auto``, SMM counts;
- :mod:`pcgraph.analysis.memory` — what a memory reads, and which clamp sets it serves;
- :mod:`pcgraph.analysis.report` — :func:`analyze`, the report of ``pcgraph check``.
"""

from __future__ import annotations

from pcgraph.analysis.cost import (
    INIT_RULE_LIST,
    INIT_RULES,
    InitRule,
    bp_smm,
    check_init,
    inference_smm,
    init_smm,
    op_smm,
    resolve_auto,
    smm_per_update,
)
from pcgraph.analysis.graph import (
    CLAMP_TASKS,
    as_digraph,
    check_forward_init,
    describe_cycle,
    error_front,
    find_cycles,
    forward_levels,
    front_steps,
    information_depths,
    memory_targets,
    resolve_clamp,
    roots,
    still_after_sweep,
    unreached_nodes,
)
from pcgraph.analysis.memory import (
    check_memory,
    check_memory_evaluation,
    evaluation_clamp,
    memory_observations,
    memory_serves,
)
from pcgraph.analysis.report import (
    GraphAnalysis,
    analyze,
)

__all__ = [
    "CLAMP_TASKS",
    "INIT_RULES",
    "INIT_RULE_LIST",
    "GraphAnalysis",
    "InitRule",
    "analyze",
    "as_digraph",
    "bp_smm",
    "check_forward_init",
    "check_init",
    "check_memory",
    "check_memory_evaluation",
    "describe_cycle",
    "error_front",
    "evaluation_clamp",
    "find_cycles",
    "forward_levels",
    "front_steps",
    "inference_smm",
    "information_depths",
    "init_smm",
    "memory_observations",
    "memory_serves",
    "memory_targets",
    "op_smm",
    "resolve_auto",
    "resolve_clamp",
    "roots",
    "smm_per_update",
    "still_after_sweep",
    "unreached_nodes",
]
