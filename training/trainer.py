"""The fine-tuning loop: accelerate for devices and processes, exact resume, evaluation and checkpoints.

Data order. Step s of a run with E = batch size x gradient accumulation x processes consumes positions
[s E, (s + 1) E) of an endless stream that walks through the training set in a fresh permutation per epoch
(`random.Random("finetune-order-<seed>-<epoch>")`); process r takes micro-batch j's slice
[(j W + r) B, (j W + r + 1) B) of the step. The order is a function of the seed and the step alone, so a
resumed run feeds exactly the batches an uninterrupted one would, and every micro-batch is full (the last
step of an epoch borrows from the next epoch's permutation; epochs are rounded up to whole steps).

Loss. Each step's loss is the mean over all its answer tokens, across micro-batches and processes: every
micro-batch's summed cross-entropy is divided by the step's total token count (counted from the text before
the forward pass), so gradient accumulation and several GPUs give the same update as one big batch.

Determinism. Model init (LoRA matrices) and dropout draw from the generators seeded by `--seed`; the data
loader has its own generator, so it never advances them. A checkpoint stores every generator's state after
its step, and a resumed run restores them: on the same hardware it continues bit for bit.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from common.errors import ToolkitError
from common.jsonio import read_json
from training import checkpoints as ckpt
from training.config import FinetuneConfig, resume_differences, validate
from training.data import TrainingData, load_training_data
from training.encode import IGNORE_INDEX, ExampleEncoder, answer_loss_sum
from training.export import SUMMARY_FILE, TrainOutcome, export_best, finished_outcome, write_summary
from training.model_setup import DTYPE_OF_PRECISION, parameter_groups, prepare_model

logger = logging.getLogger(__name__)
CONFIG_FILE = "finetune_config.json"
SCHEDULER_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


@lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(f"finetune-order-{seed}-{epoch}").shuffle(order)
    return tuple(order)


def stream_indices(n: int, seed: int, start: int, count: int) -> list[int]:
    """Positions [start, start + count) of the endless per-epoch-shuffled stream over range(n)."""
    return [epoch_order(n, seed, position // n)[position % n] for position in range(start, start + count)]


def step_micro_batches(n: int, config: FinetuneConfig, step: int, world: int, rank: int) -> list[list[int]]:
    """The sample indices of each of this process's micro-batches in optimizer step `step`."""
    per_step = config.batch_size * config.grad_accum * world
    return [stream_indices(n, config.seed, step * per_step + (j * world + rank) * config.batch_size,
                           config.batch_size) for j in range(config.grad_accum)]


def _cpu_processes() -> bool:
    """Several processes without CUDA (torchrun on a CPU machine): accelerate must be told to use gloo."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def total_steps(config: FinetuneConfig, n_train: int, world: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(config.epochs * n_train / (config.batch_size * config.grad_accum * world)))


class Trainer:
    """One fine-tuning run into `config.output_dir`; `run()` trains, resuming if a checkpoint exists.

    on_step(step, trainer), if given, is called after every optimizer step (and after any checkpoint of
    that step): a hook for logging or for stopping a run from outside.
    """

    def __init__(self, config: FinetuneConfig, *, overwrite: bool = False,
                 on_step: Optional[Callable[[int, "Trainer"], None]] = None):
        self.config = validate(config)
        self.output = Path(config.output_dir)
        self.on_step = on_step
        self.accelerator = Accelerator(mixed_precision="bf16" if config.precision == "bf16-mixed" else "no",
                                       cpu=_cpu_processes())
        self.state = ckpt.TrainerState()
        self._prepare_output(overwrite)

    # ------------------------------------------------------------------ setup

    def _prepare_output(self, overwrite: bool) -> None:
        main = self.accelerator.is_main_process
        if overwrite and main and self.output.exists():
            for path in [*self.output.glob("checkpoint-*"), *self.output.glob(".checkpoint-*"), self.output / "best"]:
                shutil.rmtree(path, ignore_errors=True)
            for path in (self.output / CONFIG_FILE, self.output / SUMMARY_FILE):
                path.unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()
        saved = self.output / CONFIG_FILE
        record = {"config": self.config.to_dict(), "num_processes": self.accelerator.num_processes}
        if saved.is_file():
            self._check_resumable(read_json(saved, what="fine-tuning config"))
        elif main:
            self.output.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(record, indent=1) + "\n")
        self.accelerator.wait_for_everyone()

    def _check_resumable(self, saved: dict) -> None:
        differences = resume_differences(saved.get("config", {}), self.config)
        if differences:
            raise ToolkitError(f"{self.output} holds a run with other settings ({'; '.join(differences[:3])}); "
                               f"use another --output-dir, or --overwrite to start that run again")
        if saved.get("num_processes") != self.accelerator.num_processes:
            raise ToolkitError(f"{self.output} was trained with {saved.get('num_processes')} processes, this launch "
                               f"has {self.accelerator.num_processes}; relaunch with the same number to resume "
                               f"exactly, or use --overwrite")

    def _load(self) -> None:
        from model_zoo import get_model  # loading transformers models is the slow part
        config = self.config
        set_seed(config.seed)
        with self.accelerator.main_process_first():  # process 0 alone renders or checks the data first
            self.data: TrainingData = load_training_data(config)
        if not self.data.train:
            raise ToolkitError(f"no training samples in {config.dataset} with these settings; check --split, "
                               f"--limit and the data root {config.data_root}")
        self.vlm = get_model(config.model, revision=config.revision, dtype=DTYPE_OF_PRECISION[config.precision],
                             device="cpu", prompt_format=config.prompt_format)
        self.encoder = ExampleEncoder(self.vlm, config.padding_side)
        model = prepare_model(self.vlm, config)
        if config.tuning == "lora":
            from model_zoo.adapters import base_model_reference
            model.peft_config["default"].base_model_name_or_path = base_model_reference(config.model)
            model.peft_config["default"].revision = config.revision
        optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr,
                                      betas=(0.9, config.adam_beta2))
        world = self.accelerator.num_processes
        self.total_steps = total_steps(config, len(self.data.train), world)
        # Stepped by hand once per optimizer step: accelerate's prepared scheduler steps once per process.
        self.scheduler = get_scheduler(SCHEDULER_NAMES[config.lr_scheduler], optimizer,
                                       num_warmup_steps=config.warmup_steps, num_training_steps=self.total_steps)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)

    # ------------------------------------------------------------------ resume

    def _resume(self) -> Optional[int]:
        found = ckpt.list_checkpoints(self.output)
        if not found:
            return None
        step, path = found[-1]
        self.state = ckpt.read_state_file(path)
        self._load_weights(path)
        device = self.accelerator.device
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        # Our own file from this run; numpy's generator state is not loadable with weights_only.
        ckpt.restore_rng_state(torch.load(path / f"rng_state_{self.accelerator.process_index}.pt",
                                          weights_only=False))
        logger.info("resumed from %s (step %d of %d)", path, step, self.total_steps)
        return step

    def _load_weights(self, path: Path) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if self.config.tuning == "lora":
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file
            set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
            return
        saved = type(model).from_pretrained(path, dtype=model.dtype)
        model.load_state_dict(saved.state_dict())

    # ------------------------------------------------------------------ steps

    def _loader(self, start: int) -> DataLoader:
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        batches = [batch for step in range(start, self.total_steps)
                   for batch in step_micro_batches(len(self.data.train), self.config, step, world, rank)]
        return DataLoader(self.data.train, batch_sampler=batches, collate_fn=self.encoder,
                          num_workers=self.config.num_workers,
                          generator=torch.Generator().manual_seed(self.config.seed))

    def _reduce(self, value) -> float:
        tensor = torch.as_tensor(value, dtype=torch.float64, device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, reduction="sum"))

    def _to_device(self, batch):
        return batch.to(self.accelerator.device).to(self.accelerator.unwrap_model(self.model).dtype)

    def _train_step(self, step: int, batches) -> float:
        """One optimizer step over this process's micro-batches; returns the step's mean token loss."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        indices = step_micro_batches(len(self.data.train), self.config, step, world, rank)
        tokens = self._reduce(self.encoder.count_targets([self.data.train[i] for b in indices for i in b]))
        loss_sum = 0.0
        for j, batch in enumerate(batches):
            last = j == len(batches) - 1
            with nullcontext() if last else self.accelerator.no_sync(self.model):
                with self.accelerator.autocast():
                    loss = answer_loss_sum(self.model, self._to_device(batch))
                # DDP averages gradients over processes; multiplying by their number makes it a sum.
                self.accelerator.backward(loss * world / tokens)
            loss_sum += float(loss.detach())
        if self.config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return self._reduce(loss_sum) / tokens

    def evaluate(self) -> Optional[float]:
        """Mean answer-token loss on the evaluation samples (None without any)."""
        if not self.data.eval:
            return None
        samples = self.data.eval[self.accelerator.process_index::self.accelerator.num_processes]
        self.model.eval()
        loss_sum, tokens = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(samples), self.config.eval_batch_size):
                batch = self._to_device(self.encoder(samples[start:start + self.config.eval_batch_size]))
                with self.accelerator.autocast():
                    loss_sum += float(answer_loss_sum(self.model, batch))
                tokens += int((batch["labels"] != IGNORE_INDEX).sum())
        self.model.train()
        return self._reduce(loss_sum) / self._reduce(tokens)

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, eval_loss: Optional[float]) -> Path:
        """Write checkpoint-<step> (model, processor, training state); keep only it and the best one."""
        acc, step = self.accelerator, self.state.step
        partial, final = ckpt.partial_path(self.output, step), ckpt.checkpoint_path(self.output, step)
        if acc.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            # LoRA: the embeddings are never trained, so peft need not compare them with the base's.
            extra = {"save_embedding_layers": False} if self.config.tuning == "lora" else {}
            acc.unwrap_model(self.model).save_pretrained(partial, **extra)
            self.vlm.processor.save_pretrained(partial)
            torch.save(self.optimizer.state_dict(), partial / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), partial / "scheduler.pt")
        acc.wait_for_everyone()
        torch.save(ckpt.rng_state(), partial / f"rng_state_{acc.process_index}.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            if eval_loss is not None and (self.state.best_eval_loss is None or eval_loss < self.state.best_eval_loss):
                self.state.best_step, self.state.best_eval_loss = step, eval_loss
            ckpt.write_state_file(partial, self.state, {"eval_loss": eval_loss, "total_steps": self.total_steps})
            ckpt.publish(partial, final)
            ckpt.prune(self.output, keep={step, self.state.best_step or step})
        acc.wait_for_everyone()
        return final

    # ------------------------------------------------------------------ run

    def _after_step(self, step: int, loss: float, bar) -> None:
        config = self.config
        entry = {"step": step, "loss": round(loss, 6), "lr": self.scheduler.get_last_lr()[0]}
        due_save = step % config.save_every == 0 or step == self.total_steps
        if step % config.eval_every == 0 or due_save:
            entry["eval_loss"] = self.evaluate()
        self.state.step = step
        self.state.history.append(entry)
        bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k in ("loss", "eval_loss") and v is not None})
        if due_save:
            self.save_checkpoint(entry.get("eval_loss"))
        if self.on_step is not None:
            self.on_step(step, self)

    def run(self) -> TrainOutcome:
        done = finished_outcome(self.output)
        if done is not None:
            logger.info("%s is already finished (best: %s); use --overwrite to train again", self.output,
                        done.best_dir)
            return done
        started = time.perf_counter()
        self._load()
        resumed = self._resume()
        start = self.state.step
        bar = tqdm(total=self.total_steps, initial=start, desc="fine-tuning", dynamic_ncols=True,
                   disable=not (self.config.progress and self.accelerator.is_main_process))
        batches = iter(self._loader(start))
        for step in range(start, self.total_steps):
            loss = self._train_step(step, [next(batches) for _ in range(self.config.grad_accum)])
            bar.update(1)
            self._after_step(step + 1, loss, bar)
        bar.close()
        seconds = time.perf_counter() - started
        outcome = TrainOutcome(self.output, self.output / "best", self.state.best_step or self.state.step,
                               self.state.best_eval_loss, self.state.step, seconds, resumed)
        if self.accelerator.is_main_process:
            export_best(self, outcome)
            write_summary(self, outcome)
        self.accelerator.wait_for_everyone()
        return outcome
