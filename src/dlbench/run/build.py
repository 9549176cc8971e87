"""Everything a run holds, built from its config: data, model, optimizer, schedule, losses,
regularizers, batches, and the callbacks that watch it."""
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dlbench.callbacks import Callback, Callbacks
from dlbench.callbacks.divergence import DivergenceGuard
from dlbench.callbacks.early_stopping import StopAtTarget
from dlbench.callbacks.progress import EpochLog, ProgressBar, wants_progress_bar
from dlbench.callbacks.tensorboard import SampleImages, StepScalars
from dlbench.config import build
from dlbench.errors import ConfigError
from dlbench.losses import build_loss
from dlbench.optim import build_optimizer, build_schedule
from dlbench.overrides import swept_keys
from dlbench.precision import Precision, prepare
from dlbench.regularizers import build_regularizers
from dlbench.run.provenance import provenance
from dlbench.run.recorder import Recorder, run_hparams
from dlbench.run.state import RunState
from dlbench.search.pruning import pruning_callback
from dlbench.runtime import resolve_device, rng_state, seed_everything, set_rng_state
from dlbench.threads import ShareThreads


def build_state(cfg: DictConfig, run_dir, overrides: list[str], data_cache: dict | None = None
                ) -> tuple[RunState, Callbacks]:
    """Everything a run holds, and the callbacks that watch it (in no order that matters)."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = build_data(cfg, device, data_cache)
    model = build(cfg.model, in_shape=data.in_shape, num_classes=data.num_classes).to(device)
    precision = Precision.build(cfg.trainer, device)
    model = prepare(model, cfg.trainer, precision)
    state, regularizer_callbacks = _training_state(cfg, run_dir, device, data, model)
    state.precision = precision
    state.overrides = overrides
    state.swept = swept_keys()  # read here, inside the run's Hydra job, whichever launcher trains it
    choices = dict(HydraConfig.get().runtime.choices) if state.swept else {}
    state.hparams = run_hparams(cfg, state.swept, choices)
    state.provenance = provenance(device)
    probes = [build(node) for node in (cfg.get("probe") or {}).values()]
    return state, Callbacks(regularizer_callbacks + probes + data.task.callbacks(cfg) + default_callbacks(cfg))


def build_data(cfg: DictConfig, device: torch.device, cache: dict | None):
    """The run's dataset; with a cache (runs trained together), one copy for runs of the same data
    and seed, and the random state left as building it left it, so the model starts as it would alone."""
    if cache is None:
        return build(cfg.dataset, seed=cfg.seed, device=device)
    key = (OmegaConf.to_yaml(cfg.dataset, resolve=True), cfg.seed, str(device))
    if key not in cache:
        cache[key] = (build(cfg.dataset, seed=cfg.seed, device=device), rng_state())
    data, after = cache[key]
    set_rng_state(after)
    return data


def _training_state(cfg: DictConfig, run_dir, device: torch.device, data, model) -> tuple[RunState, list]:
    """The optimizer, schedule, losses, regularizers and batches that train `model` on `data`."""
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    loss_fn = build_loss(cfg.loss, data)
    regs = build_regularizers(cfg, model, loss_fn, data)
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = data.train_batches(cfg.batch_size, generator, transform=regs.transform)
    if len(batches) == 0:  # a text shorter than one batch of windows, a split left empty
        raise ConfigError("dataset", cfg.dataset.name, f"gives no training batch: its training split holds "
                          f"{len(data.train):,} examples{_windows(cfg)}", "give more data (a longer text, a lower "
                          "dataset.val_split, a higher dataset.limit) or a lower batch_size")
    schedule = build_schedule(cfg.scheduler, optimizer, cfg.epochs, len(batches), cfg.warmup_steps,
                              monitor="val/loss" if data.val is not None else "train/loss")
    clip_grad = regs.clip_grad if regs.clip_grad is not None else data.clip_grad_norm  # grad_clip wins
    state = RunState(cfg=cfg, run_dir=run_dir, device=device, data=data, model=model, optimizer=optimizer,
                     schedule=schedule, loss_fn=loss_fn, train_loss=regs.train_loss, train_batches=batches,
                     generator=generator, recorder=Recorder(run_dir, cfg.epochs), clip_grad=clip_grad)
    return state, regs.callbacks


def _windows(cfg: DictConfig) -> str:
    seq_len = cfg.dataset.get("seq_len")
    return f" (windows of dataset.seq_len={seq_len}; a batch takes batch_size={cfg.batch_size} of them)" if seq_len else ""


def default_callbacks(cfg: DictConfig) -> list[Callback]:
    callbacks: list[Callback] = [EpochLog(), DivergenceGuard(every=cfg.trainer.log_every,
                                                             factor=cfg.trainer.diverge_factor)]
    if cfg.logger.enabled:
        callbacks.append(StepScalars(cfg.trainer.log_every))
        if cfg.logger.sample_images:
            callbacks.append(SampleImages(cfg.logger.sample_images))
    if cfg.trainer.threads == "auto":
        callbacks.append(ShareThreads())
    if cfg.trainer.get("stop_at_target"):
        callbacks.append(StopAtTarget())
    if (pruning := pruning_callback(cfg)) is not None:  # a trial of dlbench's search
        callbacks.append(pruning)
    if wants_progress_bar(cfg.trainer.progress):
        callbacks.append(ProgressBar(log_every=cfg.trainer.log_every))
    return callbacks
