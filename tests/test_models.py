"""The tiny world's model and model loading: tokenizer, architecture, warm start, cached builds."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from transformers import PreTrainedTokenizerFast

from bots_cli.atomic import atomic_dir
from bots_cli.errors import UserError
from bots_cli.models import build as tiny_build
from bots_cli.models import checkpoints
from bots_cli.models.build import (
    TinySettings,
    domain_pairs,
    ensure_tiny,
    fresh_tasks,
    recipe_key,
    shipped_recipe,
)
from bots_cli.models.loading import (
    load_model_and_tokenizer,
    load_tokenizer,
    render_prompt_for_model,
    resolve_dtype,
)
from bots_cli.models.tiny import (
    IGNORE,
    PairBatches,
    TinyArch,
    WarmStart,
    build_tokenizer,
    count_parameters,
    init_model,
    lr_factor,
    make_optimizer,
    save_tokenizer,
)
from tests.conftest import REPO, run_bots
from tests.miniature import ARCH, PAIRS, build_miniature


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# -- tokenizer and architecture ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["12+34=", "héllo wörld\n\t 🙂", " two  spaces ", "<|pad|>"[1:]])
def test_tokenizer_is_one_token_per_byte_and_round_trips(text: str, tmp_path: Path) -> None:
    tok = build_tokenizer()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode())
    assert tok.decode(ids) == text
    save_tokenizer(tok, tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == (
        "PreTrainedTokenizerFast")  # a name transformers 4 and 5 both load
    again = load_tokenizer(tmp_path)  # through the generic loader: stays byte-level
    assert isinstance(again, PreTrainedTokenizerFast)
    assert again(text, add_special_tokens=False)["input_ids"] == ids


def test_tokenizer_special_tokens() -> None:
    tok = build_tokenizer()
    assert len(tok) == 258 and (tok.pad_token_id, tok.eos_token_id) == (256, 257)
    assert tok("<|endoftext|>", add_special_tokens=False)["input_ids"] == [257]
    assert tok.decode([52, 50, 257, 256], skip_special_tokens=True) == "42"
    assert tok.padding_side == "left"


def test_default_architecture_has_about_a_million_parameters() -> None:
    model = init_model(shipped_recipe().arch, build_tokenizer(), seed=0)
    assert 1_070_000 < count_parameters(model) < 1_100_000
    cfg = model.config
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.intermediate_size, cfg.tie_word_embeddings) == ("qwen2", 128, 4, 4, 512, True)


def test_init_is_seeded_and_leaves_the_global_rng_alone() -> None:
    tok = build_tokenizer()
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    a, b, c = (init_model(ARCH, tok, s).state_dict() for s in (1, 1, 2))
    assert torch.equal(torch.rand(2), expected)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])


def test_warm_start_loss_covers_answer_and_eos_only() -> None:
    tok = build_tokenizer()
    batches = PairBatches([("1+1=", "2"), ("10+10=", "20")], tok, seed=0)
    ids, mask, labels = batches.next(2)
    for row_ids, row_mask, row_labels in zip(ids, mask, labels, strict=True):
        n = int(row_mask.sum())
        text = tok.decode(row_ids[:n].tolist())
        prompt_len = text.index("=") + 1
        assert (row_labels[:prompt_len] == IGNORE).all() and (row_labels[n:] == IGNORE).all()
        assert row_labels[prompt_len:n].tolist() == row_ids[prompt_len:n].tolist()
        assert row_ids[n - 1] == tok.eos_token_id  # the model learns to stop


def test_batches_cover_every_pair_each_epoch() -> None:
    pairs = [(f"{i}=", str(i)) for i in range(10)]
    batches = PairBatches(pairs, build_tokenizer(), seed=3)
    first, second = batches.next(5)[0], batches.next(5)[0]  # (5, W) each: one epoch together
    seen = [bytes(row[:2].tolist()) for row in [*first, *second]]
    assert len(set(seen)) == 10


def test_learning_rate_warms_up_then_stays_or_follows_a_cosine_to_the_last_step() -> None:
    const = WarmStart(batch_size=8, lr=1e-3, warmup_steps=10, weight_decay=0.0,
                      schedule="constant")
    cos = dataclasses.replace(const, schedule="cosine")
    assert [lr_factor(s, const, 110) for s in (0, 4, 9, 50, 500)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    assert lr_factor(4, cos, 110) == 0.5 and lr_factor(10, cos, 110) == 1.0
    assert lr_factor(60, cos, 110) == pytest.approx(0.55)  # half way: midpoint of 1 and 0.1
    assert lr_factor(110, cos, 110) == pytest.approx(0.1) == lr_factor(200, cos, 110)
    # the optimiser applies it: lr after 60 scheduler steps
    opt, sched = make_optimizer(init_model(ARCH, build_tokenizer(), 0), cos, 110)
    for _ in range(60):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.55e-3)
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_optimizer(init_model(ARCH, build_tokenizer(), 0),
                       dataclasses.replace(const, schedule="linear"))


# -- builds: determinism, cache, atomicity ----------------------------------------------------


def test_build_is_deterministic_and_learns(tmp_path: Path) -> None:
    a = build_miniature(tmp_path / "a", seed=0)
    b = build_miniature(tmp_path / "b", seed=0)
    c = build_miniature(tmp_path / "c", seed=1)
    for name in ("weak", "strong"):
        wa, wb, wc = (weights(x.checkpoint(name)) for x in (a, b, c))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    weak, strong = weights(a.checkpoint("weak")), weights(a.checkpoint("strong"))
    assert any(not torch.equal(weak[k], strong[k]) for k in weak)
    assert a.results["strong"]["final_loss"] < a.results["weak"]["final_loss"] < 3.0
    manifest = json.loads((a.build_dir / "manifest.json").read_text())
    assert manifest["key"]["seed"] == 0 and manifest["key"]["strong_steps"] == 120
    assert manifest["key"]["data_sha256"] == checkpoints.hash_pairs(PAIRS)


def test_a_matching_build_is_reused_and_any_change_rebuilds(tmp_path: Path) -> None:
    first = build_miniature(tmp_path / "m")
    assert not first.reused
    stamp = (tmp_path / "m" / "weak" / "model.safetensors").stat().st_mtime_ns
    again = build_miniature(tmp_path / "m")
    assert again.reused and again.results == first.results
    assert (tmp_path / "m" / "weak" / "model.safetensors").stat().st_mtime_ns == stamp
    assert not build_miniature(tmp_path / "m", seed=1).reused
    assert not build_miniature(tmp_path / "m", seed=1, pairs=PAIRS[:50]).reused
    assert not build_miniature(tmp_path / "m", seed=1, pairs=PAIRS[:50], strong_steps=60).reused
    assert build_miniature(tmp_path / "m", seed=1, pairs=PAIRS[:50], strong_steps=60).reused


def test_an_interrupted_build_leaves_the_previous_one_intact(tmp_path: Path) -> None:
    build_dir = tmp_path / "m"
    build_miniature(build_dir)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(KeyboardInterrupt), atomic_dir(build_dir) as tmp:
        (tmp / "weak").mkdir()
        (tmp / "weak" / "partial").write_text("half")
        raise KeyboardInterrupt
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert build_miniature(build_dir).reused


def test_a_build_without_manifest_is_not_trusted(tmp_path: Path) -> None:
    build = build_miniature(tmp_path / "m")
    (build.build_dir / "manifest.json").unlink()
    assert not build_miniature(tmp_path / "m").reused


# -- settings and loading ---------------------------------------------------------------------


def test_tiny_settings_from_the_shipped_config() -> None:
    cfg = OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml")
    s = TinySettings.from_config(cfg)
    assert s.build_dir == REPO / "data" / "models" / "tiny" / "arith" and s.domain == "arith"
    assert s.arch == TinyArch(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512,
                              max_positions=512) and s.weak_steps < s.strong_steps
    assert shipped_recipe() == s  # reads the same file
    assert s.fresh_data and s.warm.schedule == "cosine" and s.level_weights is not None
    cfg.build.strong_steps = s.weak_steps
    with pytest.raises(UserError, match=r"strong_steps .* must exceed weak_steps"):
        TinySettings.from_config(cfg)
    qwen = OmegaConf.load(REPO / "conf" / "model" / "qwen7b.yaml")
    with pytest.raises(UserError, match="model=qwen7b has no `build` section"):
        TinySettings.from_config(qwen)


def test_fresh_warm_start_tasks_avoid_both_splits_and_follow_the_level_weights() -> None:
    from bots_cli.domains import load_domain

    dom = load_domain("arith")
    held = {p for split in ("train", "eval") for p in dom.load(split=split)["prompt"]}
    tasks = fresh_tasks(dom, 2000, seed=0, held=held, level_weights=[0, 0, 0, 1, 3, 0, 0])
    levels = [t["level"] for t in tasks]
    assert set(levels) == {4, 5} and 0.65 < levels.count(5) / len(levels) < 0.85
    assert not {t["prompt"] for t in tasks} & held
    for t in tasks[:200]:  # answers are right (our own generated expressions: safe to eval)
        assert str(eval(t["prompt"][:-1])) == t["answer"]
    assert tasks == fresh_tasks(dom, 2000, seed=0, held=held, level_weights=[0, 0, 0, 1, 3, 0, 0])
    # equal weights by default: every level appears
    assert {t["level"] for t in fresh_tasks(dom, 700, seed=1, held=held)} == set(dom.levels)
    with pytest.raises(UserError, match="one weight >= 0 per arith level"):
        fresh_tasks(dom, 10, seed=0, held=held, level_weights=[1, 1])
    level1 = {f"{a}{x}{b}{y}{c}=" for a in range(10) for b in range(10) for c in range(10)
              for x in "+-" for y in "+-"}
    with pytest.raises(UserError, match="level 1: every prompt drawn is a train or eval task"):
        fresh_tasks(dom, 10, seed=0, held=held | level1, level_weights=[1, 0, 0, 0, 0, 0, 0])


def test_fresh_domain_pairs_are_rendered_prompts_and_answers() -> None:
    pairs = domain_pairs("arith", None, build_tokenizer(), fresh=50, seed=0)
    assert len(pairs) == 50 and all(p.endswith("=") and a.lstrip("-").isdigit() for p, a in pairs)
    train = domain_pairs("arith", None, build_tokenizer())
    assert len(train) == 4200 and not set(pairs) & set(train)


def test_model_path_loads_any_local_checkpoint(tmp_path: Path) -> None:
    build = build_miniature(tmp_path / "m")
    cfg = OmegaConf.create({"name": "tiny", "path": str(build.checkpoint("strong")),
                            "dtype": "auto", "device": "auto"})
    model, tok = load_model_and_tokenizer(cfg)
    assert isinstance(tok, PreTrainedTokenizerFast) and tok.eos_token_id == 257
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    reference = weights(build.checkpoint("strong"))
    assert torch.equal(model.state_dict()["model.norm.weight"], reference["model.norm.weight"])


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"path": "/no/such/dir"}, "model.path=/no/such/dir: no such directory"),
        ({"path": "."}, "is not a Hugging Face model directory (no config.json in it)"),
        ({"path": None, "hub_id": None}, "sets neither model.path nor model.hub_id"),
        ({"path": ".", "dtype": "float8"}, "model.dtype must be one of"),
    ],
)
def test_model_config_errors(cfg: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        if "dtype" in cfg:
            resolve_dtype(cfg["dtype"], torch.device("cpu"))
        else:
            load_model_and_tokenizer(OmegaConf.create({"name": "x", **cfg}))


def test_a_missing_hub_model_offline_is_one_line_saying_how_to_fix_it(tmp_path: Path) -> None:
    code = ("from omegaconf import OmegaConf; from bots_cli.models.loading import model_dir\n"
            "from bots_cli.errors import UserError\n"
            "try:\n model_dir(OmegaConf.load('conf/model/qwen7b.yaml'))\n"
            "except UserError as e:\n print(e)")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout + out.stderr
    assert "Qwen/Qwen2.5-7B-Instruct is not in the Hugging Face cache" in lines[0]
    assert "huggingface-cli download Qwen/Qwen2.5-7B-Instruct" in lines[0]
    assert "model.path=" in lines[0]


def test_prompts_use_the_chat_template_where_there_is_one() -> None:
    tok = build_tokenizer()
    assert render_prompt_for_model(tok, "3+4=") == "3+4="  # the tiny model: plain text
    assert render_prompt_for_model(tok, [{"role": "user", "content": "3+4="}]) == "3+4="
    tok.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>"
                         "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    assert render_prompt_for_model(tok, "3+4=") == "<user>3+4=</user><assistant>"
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "3+4="}]
    assert render_prompt_for_model(tok, chat) == (
        "<system>Be brief.</system><user>3+4=</user><assistant>")


def test_build_tiny_command_refuses_models_it_cannot_build(scratch: Path) -> None:
    out = run_bots("build-tiny", "model=qwen1_5b", cwd=scratch)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: model=qwen1_5b has no `build` section: only the tiny "
                                  "model is built locally (use model=tiny)")


# -- recipe builds: what the shared tiny model depends on ---------------------------------------

# A recipe that builds in about a second: 16 fresh arith tasks, 4 steps of a 1-layer model.
SMALL_RECIPE = {"weak_steps": 2, "strong_steps": 4, "batch_size": 4, "warmup_steps": 1,
                "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                "max_positions": 64}


def recipe(build_dir: Path, **build: Any) -> Any:
    """conf/model/tiny.yaml with a small recipe, building under `build_dir`."""
    cfg = OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml")
    cfg.build = OmegaConf.merge(cfg.build, {**SMALL_RECIPE, "dir": str(build_dir), **build})
    return cfg


def arith_with(**data: str) -> Any:
    cfg = OmegaConf.load(REPO / "conf" / "domain" / "arith.yaml")
    cfg.data = OmegaConf.merge(cfg.data, data)
    return cfg


def no_task_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("checking the cache generated or loaded warm-start tasks")

    monkeypatch.setattr(tiny_build, "fresh_tasks", refuse)
    monkeypatch.setattr(tiny_build, "domain_pairs", refuse)


def test_the_cache_check_needs_no_task_and_ignores_the_commands_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tiny_build, "_NOTED", set())
    cfg = recipe(tmp_path / "models")
    first = ensure_tiny(cfg, progress=False)
    assert not first.reused
    capsys.readouterr()
    no_task_generation(monkeypatch)
    mine = tmp_path / "my.jsonl"
    for domain_cfg in (None, arith_with(), OmegaConf.load(REPO / "conf" / "domain" / "logic.yaml")):
        assert ensure_tiny(cfg, domain_cfg).reused  # the shipped splits, or another domain: silent
    assert capsys.readouterr().err == ""
    for _ in ("weak", "strong"):  # a command loads both checkpoints: one line all the same
        assert ensure_tiny(cfg, arith_with(train=str(mine))).reused
    err = capsys.readouterr().err.splitlines()
    assert err == [f"note: the tiny model was warm-started with the shipped arith splits held out, "
                   f"not domain.data.train={mine}: its warm-start tasks may include some of yours"]
    key = recipe_key(TinySettings.from_config(cfg))
    assert key["splits"]["generate"] == OmegaConf.to_container(
        OmegaConf.load(REPO / "conf" / "domain" / "arith.yaml").generate)
    assert key == recipe_key(TinySettings.from_config(recipe(tmp_path / "elsewhere")))
    assert key != recipe_key(TinySettings.from_config(recipe(tmp_path / "models", seed=1)))


def test_a_recipe_change_rebuilds_and_a_forced_rebuild_is_bit_for_bit(tmp_path: Path) -> None:
    cfg = recipe(tmp_path / "models")
    first = ensure_tiny(cfg, progress=False)
    before = checkpoints.weights_sha256(first.build_dir, ("weak", "strong"))
    assert first.results["weights_sha256"] == before
    assert not ensure_tiny(recipe(tmp_path / "models", strong_steps=5), progress=False).reused
    again = ensure_tiny(cfg, force=True, progress=False)
    assert not again.reused
    assert checkpoints.weights_sha256(again.build_dir, ("weak", "strong")) == before


def test_the_fingerprint_is_a_hash_of_the_weights(tmp_path: Path) -> None:
    build = ensure_tiny(recipe(tmp_path / "models"), progress=False)
    fingerprint = checkpoints.build_fingerprint(build.build_dir)
    manifest = json.loads((build.build_dir / "manifest.json").read_text())
    manifest["key"]["format"] = "another key, the same weights"
    (build.build_dir / "manifest.json").write_text(json.dumps(manifest))
    assert checkpoints.build_fingerprint(build.build_dir) == fingerprint
    weights_file = build.checkpoint("strong") / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-1] ^= 1
    weights_file.write_bytes(bytes(data))
    assert checkpoints.build_fingerprint(build.build_dir) != fingerprint
    assert checkpoints.build_fingerprint(tmp_path / "none") == "unbuilt"


def test_the_shipped_build_matches_its_recipe_and_the_shipped_profiles() -> None:
    """The tiny model ships in data/models/tiny/arith: the default recipe must find it (no
    rebuild on first use), and the shipped profiles were measured on exactly these weights."""
    from bots_cli.references.table import read_profile

    shipped = REPO / "data" / "models" / "tiny" / "arith"
    settings = TinySettings.from_config(OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml"))
    assert checkpoints.matching_build(shipped, recipe_key(settings), ("weak", "strong"))
    fingerprint = checkpoints.build_fingerprint(shipped)
    profiles = sorted((REPO / "data" / "profiles" / "arith").glob("tiny-*.parquet"))
    assert len(profiles) == 4
    for path in profiles:
        assert read_profile(path)[1]["model_source"] == f"tiny build {fingerprint}", path


def test_build_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        build = ensure_tiny(recipe(tmp_path / "models"), progress=False)
    finally:
        os.umask(previous)
    paths = [build.build_dir, *build.build_dir.rglob("*")]
    modes = {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_file()}
    assert "model.safetensors" in {p.name for p in paths}
    assert modes == {0o644}
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_dir()} == {0o755}


KILLABLE = ("import sys\nfrom omegaconf import OmegaConf\n"
            "from bots_cli.models.build import ensure_tiny\n"
            "ensure_tiny(OmegaConf.load(sys.argv[1]), progress=False)\n")


def start_long_build(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """A build that runs for minutes (the train split, cycled), once its temporary directory
    exists. Returns the process and the directory builds go to."""
    models = tmp_path / "models"
    cfg = recipe(models, data="train", weak_steps=100_000, strong_steps=200_000)
    OmegaConf.save(cfg, tmp_path / "model.yaml")
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(tmp_path / "model.yaml")],
                            cwd=REPO, text=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # not a timing threshold: a hang guard
    while not list(models.glob(".arith.tmp-*")):
        if proc.poll() is not None:
            raise AssertionError(f"the build ended early: {proc.communicate()[1]}")
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return proc, models


def test_a_sigterm_mid_build_leaves_no_temporary_directory(tmp_path: Path) -> None:
    proc, models = start_long_build(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == -signal.SIGTERM
    assert list(models.iterdir()) == []


def test_a_build_killed_outright_is_cleaned_up_by_the_next_build(tmp_path: Path) -> None:
    proc, models = start_long_build(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    [left] = list(models.glob(".arith.tmp-*"))  # SIGKILL cannot be caught
    build = ensure_tiny(recipe(models), progress=False)
    assert sorted(p.name for p in models.iterdir()) == ["arith"] and not left.exists()
    assert build.checkpoint("strong").joinpath("model.safetensors").is_file()


def imports_of(module: str) -> set[str]:
    """Every bots_cli module `module` imports, at the top or inside a function."""
    path = REPO / Path(*module.split("."))
    source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("bots_cli.") and (
        (REPO / Path(*m.split("."))).is_dir() or (REPO / Path(*m.split("."))).with_suffix(".py")
        .is_file())}


def test_the_build_does_not_import_the_engines() -> None:
    """engines -> models.loading -> models.build must not lead back to the engines: the greedy
    check of `bots build-tiny` lives in models.build_command."""
    seen, todo = set(), ["bots_cli.models.build", "bots_cli.models.loading"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imports_of(module))
    assert not {m for m in seen if m.startswith("bots_cli.engines")}, sorted(seen)
    assert "bots_cli.engines" in imports_of("bots_cli.models.build_command")
    code = "import sys, bots_cli.engines.hf; print('bots_cli.models.build' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_build_tiny_verify_rebuilds_and_compares_the_weights(tmp_path: Path) -> None:
    models = tmp_path / "models"
    args = [f"model.build.{k}={v}" for k, v in {**SMALL_RECIPE, "dir": models}.items()]
    assert run_bots("build-tiny", *args, "build.eval_pairs=0", cwd=tmp_path).returncode == 0
    out = run_bots("build-tiny", *args, "build.verify=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "weak bit-for-bit the same" in out.stdout and "strong bit-for-bit the same" in out.stdout
    weights_file = models / "arith" / "weak" / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-1] ^= 1
    weights_file.write_bytes(bytes(data))
    out = run_bots("build-tiny", *args, "build.verify=true", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"error: the rebuilt weak weights differ from {models}")
    assert sorted(p.name for p in models.iterdir()) == ["arith"]  # the installed build untouched
