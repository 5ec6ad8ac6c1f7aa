"""Distil a causal LM into a smaller one with ``course_lib.llm.trainer.DistillationTrainer``.

    python scripts/distill_llm.py --teacher tiny --student tiny --data tiny --steps 20 --output-dir build/distill
    torchrun --nproc_per_node 2 scripts/distill_llm.py --teacher tiny --student tiny --data tiny --steps 20 ...

The same command scales out: under ``torchrun`` (or ``accelerate launch``) each process trains on
its shard of the data and DDP averages the gradients (gloo on CPU, NCCL on GPUs); a DeepSpeed or
FSDP run adds the Trainer's own flags to the ``TrainingArguments`` built here.

- ``--teacher`` / ``--student``: a folder ``from_pretrained`` reads, or ``tiny``: a random
  4-layer teacher and 2-layer student ``LlamaForCausalLM`` (hidden 32, vocabulary 64) built from
  ``--seed``, for tests and smoke runs. ``--teacher none`` when ``--data`` carries the teacher's
  cached top-k logits.
- ``--data``: a ``.pt`` or ``.safetensors`` file holding token blocks ``[N, S]`` (a tensor, or a
  dict with ``input_ids`` and optionally ``attention_mask``, ``teacher_topk_values``,
  ``teacher_topk_indices``), or ``tiny``: learnable random blocks (``tiny_token_blocks``).

Writes to ``--output-dir``: ``student/`` (the final student, saved by the main process) and, per
process, ``losses_rank{R}.json``: rank, world size, the first and last logged loss, every logged
loss / kd / ce, the wall time, and the sha256 of the student's final parameters (equal on every
rank after a DDP run).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from course_lib.llm.losses import DIVERGENCES  # noqa: E402

TINY_VOCAB, TINY_TEACHER_LAYERS, TINY_STUDENT_LAYERS = 64, 4, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="model folder, 'tiny', or 'none' (cached top-k in --data)")
    p.add_argument("--student", required=True, help="model folder or 'tiny'")
    p.add_argument("--data", required=True, help="token blocks (.pt / .safetensors) or 'tiny'")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--steps", type=int, default=100, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8, help="blocks per process per micro-batch")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--divergence", choices=DIVERGENCES, default="forward_kl")
    p.add_argument("--beta", type=float, default=0.5, help="the JSD's mixture weight")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the KD term (1 - alpha: CE on the labels)")
    p.add_argument("--vocab-size", type=int, default=None, help="trim both vocabularies to it (padded heads)")
    p.add_argument("--logging-steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is there")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "grad_accum", "logging_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def load_model(spec: str, role: str, seed: int):
    """``tiny`` or a ``from_pretrained`` folder (float32)."""
    from course_lib.llm.tiny import tiny_llama

    if spec == "tiny":
        layers = TINY_TEACHER_LAYERS if role == "teacher" else TINY_STUDENT_LAYERS
        return tiny_llama(layers, seed=seed + (0 if role == "teacher" else 1), vocab_size=TINY_VOCAB)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32)


def load_data(spec: str, seed: int):
    from course_lib.llm.trainer import TokenBlockDataset
    from course_lib.llm.tiny import tiny_token_blocks

    if spec == "tiny":
        return TokenBlockDataset(tiny_token_blocks(64, 32, vocab_size=TINY_VOCAB, seed=seed))
    path = Path(spec)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        data = load_file(str(path))
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    if torch.is_tensor(data):
        data = {"input_ids": data}
    if not isinstance(data, dict) or "input_ids" not in data:
        raise SystemExit(f"{path}: expected a tensor [N, S] of token ids or a dict with 'input_ids', "
                         f"got {type(data).__name__}")
    return TokenBlockDataset(**data)


def parameters_sha256(model: torch.nn.Module) -> str:
    """sha256 of every parameter's float32 bytes, in name order."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers import TrainingArguments
    from transformers.utils import logging as hf_logging

    from course_lib.llm.trainer import TOPK_KEYS, DistillationTrainer

    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()
    cpu = args.cpu or not torch.cuda.is_available()
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1      # by torchrun / accelerate launch
    teacher = None if args.teacher == "none" else load_model(args.teacher, "teacher", args.seed)
    student = load_model(args.student, "student", args.seed)
    data = load_data(args.data, args.seed)
    if teacher is None and TOPK_KEYS[0] not in data.tensors:
        raise SystemExit(f"--teacher none needs --data holding the teacher's cached top-k logits "
                         f"({', '.join(TOPK_KEYS)}); {args.data} has only {sorted(data.tensors)}")
    targs = TrainingArguments(
        output_dir=str(args.output_dir), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr, lr_scheduler_type="constant",
        logging_steps=args.logging_steps, save_strategy="no", report_to="none", disable_tqdm=True,
        seed=args.seed, use_cpu=cpu, ddp_backend="gloo" if cpu and launched else None, ddp_find_unused_parameters=False,
        dataloader_num_workers=0)
    trainer = DistillationTrainer(model=student, args=targs, teacher=teacher, train_dataset=data,
                                  divergence=args.divergence, beta=args.beta, temperature=args.temperature,
                                  alpha=args.alpha, vocab_size=args.vocab_size)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(str(args.output_dir / "student"))         # the main process writes it

    logs = [e for e in trainer.state.log_history if "loss" in e]
    if not logs:
        raise SystemExit("no loss was logged: is --logging-steps larger than --steps?")
    report = {"rank": targs.process_index, "world_size": targs.world_size,
              "first_loss": logs[0]["loss"], "last_loss": logs[-1]["loss"],
              "losses": [e["loss"] for e in logs], "kd": [e["kd"] for e in logs], "ce": [e["ce"] for e in logs],
              "steps": trainer.state.global_step, "train_seconds": round(seconds, 3),
              "student_sha256": parameters_sha256(trainer.model)}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / f"losses_rank{targs.process_index}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"rank {report['rank']}/{report['world_size']}: loss {report['first_loss']:.4f} -> "
          f"{report['last_loss']:.4f} in {report['steps']} steps ({seconds:.1f} s); wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
