"""Training (method.md §5–§6) on a handful of real CIFAR-10 images with tiny networks."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aex.models import ModelStore, load_checkpoint, load_image_folder
from aex.models.training import (
    EpochStats,
    PsiController,
    ResumeMismatchError,
    TrainConfig,
    Trainer,
    penalty_scalar,
    robust_loss,
)

TINY = {"arch": "preact_resnet", "arch_kwargs": {"depth": 8, "widths": [4, 8]},
        "batch_size": 16, "lr": 0.05, "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory, cifar_test_dir: Path) -> Path:
    """Three CIFAR-10 classes, 32 real JPEG images each, as an ImageFolder tree."""
    root = tmp_path_factory.mktemp("small") / "train"
    for cls in ("airplane", "automobile", "frog"):
        (root / cls).mkdir(parents=True)
        for f in sorted((cifar_test_dir / cls).iterdir())[:32]:
            shutil.copy(f, root / cls / f.name)
    return root


def _trainer(folder: Path, run: Path, resume: bool = False, **kw: object) -> Trainer:
    cfg = TrainConfig(**{**TINY, **kw})  # type: ignore[arg-type]
    return Trainer(cfg, load_image_folder(folder), run, device="cpu", resume=resume,
                   show_progress=False)




@pytest.mark.needs_shared_data
def test_standard_training_lowers_the_loss(small_folder: Path, tmp_path: Path) -> None:
    trainer = _trainer(small_folder, tmp_path, epochs=6)
    history = trainer.fit()
    assert history[-1].loss < history[0].loss
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]


@pytest.mark.needs_shared_data
def test_robust_training_runs_the_penalty_and_adapts_psi(small_folder: Path,
                                                         tmp_path: Path) -> None:
    trainer = _trainer(small_folder, tmp_path, epochs=2, robust=True, target_loss=5.0)
    history = trainer.fit()
    assert trainer.config.act == "hhrelu"
    assert all(h.penalty > 0 for h in history)
    # CE stays under the (high) target: I grows by at most +1 per batch (6 batches/epoch).
    assert 0 < trainer.psi.integral <= 12
    assert history[-1].psi == pytest.approx(220 * math.exp(0.02 * trainer.psi.integral))


@pytest.mark.needs_shared_data
def test_adversarial_and_robust_together(small_folder: Path, tmp_path: Path) -> None:
    trainer = _trainer(small_folder, tmp_path, epochs=1, robust=True, adversarial="l2min",
                       max_batches=2)
    assert trainer.config.adv_eps == 0.1
    assert trainer.fit()[0].images == 32


def test_psi_follows_its_rule() -> None:
    psi = PsiController()
    assert psi.psi == 220
    psi.update(1.5 / math.e)  # CE under target: −ln(CE/L) = 1 → +1
    assert psi.integral == pytest.approx(1.0)
    psi.update(0.01)  # far under: clamped to +1
    assert psi.integral == pytest.approx(2.0)
    psi.update(15.0)  # above target: decays by at most 0.01
    assert psi.integral == pytest.approx(1.99)
    psi.integral = 0.005
    psi.update(15.0)
    assert psi.integral == 0.0  # never below zero
    assert PsiController(integral=100).psi == pytest.approx(220 * math.exp(2))


def test_tandem_scalar_mixes_margin_and_random_logits() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0]] * 2000)
    y = torch.zeros(2000, dtype=torch.long)
    s = penalty_scalar(logits, y, zeta=0.2, generator=torch.Generator().manual_seed(0))
    margin_share = float((s == 2.0).float().mean())  # margin 3 − 1 = 2
    assert 0.17 < margin_share < 0.23
    assert set(s.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}


def test_robust_loss_is_ce_plus_psi_times_mean_squared_input_gradient() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    total, ce, penalty, logits, _ = robust_loss(model, x, y, psi=10.0, zeta=0.0,
                                             generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(logits, model(x).detach())
    assert total.requires_grad
    assert float(ce) == pytest.approx(float(torch.nn.functional.cross_entropy(model(x), y)))
    assert float(total) == pytest.approx(float(ce) + 10.0 * float(penalty), rel=1e-6)
    # With ζ = 0, s is the logit of a random class k, and for a linear model ∂s/∂x is row
    # k of W: the penalty is the mean of the squared rows (same draws as the loss made).
    gen = torch.Generator().manual_seed(1)
    torch.rand(4, generator=gen)
    k = torch.randint(3, (4,), generator=gen)
    expected = model[1].weight.detach()[k].square().mean()
    assert float(penalty) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.needs_shared_data
def test_stopped_and_resumed_equals_uninterrupted(small_folder: Path, tmp_path: Path) -> None:
    straight = _trainer(small_folder, tmp_path / "a", epochs=3, robust=True)
    straight.fit()

    def stop_after_two(stats: EpochStats) -> None:
        if stats.epoch == 2:
            raise _Stop

    interrupted = _trainer(small_folder, tmp_path / "b", epochs=3, robust=True)
    with pytest.raises(_Stop):
        interrupted.fit(on_epoch=stop_after_two)
    resumed = _trainer(small_folder, tmp_path / "b", resume=True, epochs=3, robust=True)
    assert resumed.epoch == 2
    resumed.fit()
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.psi.integral == straight.psi.integral


@pytest.mark.needs_shared_data
def test_resume_with_other_options_is_refused(small_folder: Path, tmp_path: Path) -> None:
    _trainer(small_folder, tmp_path, epochs=1).fit()
    with pytest.raises(ResumeMismatchError, match="lr: saved 0.05 vs now 0.1"):
        _trainer(small_folder, tmp_path, resume=True, epochs=1, lr=0.1)
    with pytest.raises(ResumeMismatchError, match="started for 1 epochs, not 4"):
        _trainer(small_folder, tmp_path, resume=True, epochs=4)
    with pytest.raises(ValueError, match="already holds a training state"):
        _trainer(small_folder, tmp_path, epochs=1)


@pytest.mark.needs_shared_data
def test_resume_accepts_a_state_from_before_a_new_option_existed(small_folder: Path,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(_Stop):
        _trainer(small_folder, tmp_path, epochs=2).fit(on_epoch=_stop_after_first)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    del state["identity"]["adv_steps"]  # as if the option had been added since
    torch.save(state, tmp_path / "state.pt")
    assert _trainer(small_folder, tmp_path, resume=True, epochs=2).epoch == 1
    with pytest.raises(ResumeMismatchError, match="adv_steps"):
        _trainer(small_folder, tmp_path, resume=True, epochs=2, adv_steps=3)


class _Stop(Exception):
    """Stands for an interruption after an epoch's state was written."""


def _stop_after_first(stats: EpochStats) -> None:
    raise _Stop


@pytest.mark.needs_shared_data
def test_registered_checkpoint_matches_the_trained_model(small_folder: Path,
                                                         tmp_path: Path) -> None:
    trainer = _trainer(small_folder, tmp_path / "run", epochs=1, robust=True)
    trainer.fit()
    store = ModelStore(tmp_path / "registry", include_bundled=False)
    entry = trainer.register("tiny-robust", {"accuracy": 0.5}, store=store)
    loaded = load_checkpoint("tiny-robust", store=store)
    assert loaded.classes == ["airplane", "automobile", "frog"]
    assert entry.meta["training"]["robust"] is True
    assert entry.meta["training"]["psi_integral"] == trainer.psi.integral
    x = torch.rand(3, 3, 32, 32)
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), trainer.model(x))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aex.cli", "train", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.needs_shared_data
def test_cli_trains_and_registers(small_folder: Path, tmp_path: Path) -> None:
    test_dir = small_folder  # the same images stand in for a test split
    result = _cli("--train-dir", str(small_folder), "--test-dir", str(test_dir), "--arch",
                  "preact_resnet", "--widths", "4", "8", "--robust", "--epochs", "1",
                  "--batch-size", "32", "--out", str(tmp_path / "run"), "--name", "cli-tiny",
                  "--model-dir", str(tmp_path / "reg"), "--no-progress", "--ara-images", "6",
                  "--ara-steps", "20")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["name"] == "cli-tiny" and 0 <= report["accuracy"] <= 1
    meta = json.loads((tmp_path / "reg" / "cli-tiny.json").read_text())
    assert meta["metrics"]["accuracy"] == report["accuracy"]
    assert meta["metrics"]["ara_images"] == 6
    assert meta["training"]["command"].startswith(f"aex train --train-dir {small_folder} ")
    assert 0 <= meta["metrics"]["ara_attack"] <= meta["metrics"]["ara_btr"] < 1


@pytest.mark.needs_shared_data
@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "does not exist"),
    ("empty", "no class subfolders"),
    ("one-class", "at least two classes"),
    ("no-images", "contains no images"),
])
def test_cli_bad_data_is_a_clear_message(setup: str, message: str, tmp_path: Path,
                                         small_folder: Path) -> None:
    data = tmp_path / "data"
    if setup != "missing":
        data.mkdir()
    if setup == "one-class":
        shutil.copytree(small_folder / "frog", data / "frog")
    if setup == "no-images":
        (data / "cat").mkdir()
        (data / "cat" / "notes.txt").write_text("not an image")
    result = _cli("--train-dir", str(data), "--out", str(tmp_path / "run"), "--epochs", "1")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.needs_shared_data
def test_undecodable_images_are_skipped_and_counted(small_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_folder, data)
    (data / "frog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    images = load_image_folder(data)
    assert images.skipped == 1 and len(images) == 96


@pytest.mark.needs_shared_data
def test_unknown_architecture_is_a_clear_message(small_folder: Path, tmp_path: Path) -> None:
    result = _cli("--train-dir", str(small_folder), "--arch", "vgg99", "--out",
                  str(tmp_path / "run"))
    assert result.returncode == 2 and "unknown architecture 'vgg99'" in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.needs_shared_data
def test_two_processes_match_one_process_on_the_combined_batch(small_folder: Path,
                                                               tmp_path: Path) -> None:
    """torchrun with 2 gloo processes against one process that takes both processes'
    shares of each batch (BatchNorm statistics per share, as each process has its own),
    averages their gradients and steps once with the same learning rate (0.1 × 2)."""
    options = ["--arch", "preact_resnet", "--widths", "4", "8", "--robust", "--epochs", "1",
               "--batch-size", "16", "--seed", "3", "--mean", "0.49", "0.48", "0.45",
               "--std", "0.25", "0.24", "0.26"]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), "-m", "aex.cli", "train", "--train-dir",
         str(small_folder), *options, "--out", str(tmp_path / "ddp"), "--no-progress"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    distributed = torch.load(tmp_path / "ddp" / "state.pt", weights_only=True)

    config = TrainConfig(**{**TINY, "arch_kwargs": {"widths": [4, 8]}, "robust": True,
                            "epochs": 1, "seed": 3, "lr": 0.2})
    data = load_image_folder(small_folder)
    single = Trainer(config, data, tmp_path / "one", device="cpu", show_progress=False)
    seed = config.seed * 100_003
    shards, gens = [], []
    for rank in range(2):
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(data), generator=gen)
        share = len(order) // 2
        shards.append(order[rank * share:(rank + 1) * share])
        gens.append(gen)
    for step in range(len(shards[0]) // 16):
        single.optimizer.zero_grad(set_to_none=True)
        ce = 0.0
        for shard, gen in zip(shards, gens, strict=True):
            idx = shard[step * 16:(step + 1) * 16]
            stats, _ = single.accumulate_gradients(data.floats(idx), data.labels[idx], gen,
                                                   weight=0.5)
            ce += float(stats[1]) / 2
        single.optimizer.step()
        single.psi.update(ce)
    assert distributed["psi_integral"] == pytest.approx(single.psi.integral, rel=1e-5)
    for name, param in single.model.named_parameters():
        torch.testing.assert_close(distributed["model"][name], param.detach(),
                                   rtol=1e-4, atol=1e-6, msg=name)
