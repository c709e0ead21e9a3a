"""Cross-check the training plan's FSDP sharding against real torch.distributed FSDP.

Two CPU processes (gloo) shard a small transformers PerceiverForMaskedLM with FSDP2
(``fully_shard``), run one training step with AdamW, and report the elements rank 0 holds for
parameters, gradients and optimizer states; the plan must predict each exactly. The config has
odd first dimensions (vocab_size 263, num_latents 5, ...) so the ceil(rows / N) padding shows.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import perceiver_calc as pc  # noqa: E402
from perceiver_calc.plan import training_plan  # noqa: E402
from perceiver_calc.workload import Workload  # noqa: E402

CONFIG: dict[str, Any] = {
    "num_latents": 5,
    "d_latents": 16,
    "d_model": 24,
    "num_blocks": 1,
    "num_self_attends_per_block": 1,
    "num_self_attention_heads": 2,
    "num_cross_attention_heads": 2,
    "vocab_size": 263,
    "max_position_embeddings": 7,
    "attention_probs_dropout_prob": 0.0,
}
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    import transformers
    from torch.distributed.fsdp import fully_shard

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        model = transformers.PerceiverForMaskedLM(transformers.PerceiverConfig(**CONFIG))
        fully_shard(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ids = torch.randint(0, CONFIG["vocab_size"], (2, CONFIG["max_position_embeddings"]))
        loss = model(inputs=ids, labels=ids).loss
        loss.backward()
        opt.step()
        params = sum(p.to_local().numel() for p in model.parameters())
        grads = sum(p.grad.to_local().numel() for p in model.parameters() if p.grad is not None)
        states = sum(
            v.to_local().numel()
            for s in opt.state.values()
            for k, v in s.items()
            if k in ("exp_avg", "exp_avg_sq")
        )
        Path(out, f"{rank}.json").write_text(
            json.dumps({"params": params, "grads": grads, "states": states})
        )
    finally:
        dist.destroy_process_group()


def test_fsdp_per_rank_bytes_match_torch(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(WORLD)]
    resolved = pc.resolve(pc.load_config(CONFIG), "PerceiverForMaskedLM")
    plan = training_plan(resolved, Workload(batch_size=2, optimizer="adamw"), gpus=WORLD)
    fsdp = next(m for m in plan.memory if m.strategy == "fsdp" and not m.checkpointing)
    # Rank 0 holds the ceil-sized chunk of every tensor: the plan's per-rank figure.
    assert ranks[0]["params"] == plan.sharded_params_per_rank
    assert fsdp.weights_bytes == 4 * ranks[0]["params"]
    assert fsdp.gradients_bytes == 4 * ranks[0]["grads"]
    assert fsdp.optimizer_bytes == 4 * ranks[0]["states"]
    # Together the ranks hold each parameter exactly once.
    assert sum(r["params"] for r in ranks) == plan.params
