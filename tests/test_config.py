"""Config resolution: precedence, provenance, validation messages, and the registry file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blitz.catalog import check_catalog, load_catalog, parse_catalog, resolve
from blitz.config import RunConfig
from blitz.errors import ConfigError, UnknownNameError
from blitz.resolve import CLIOverrides, resolve_config


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_layers():
    resolved = resolve_config()
    assert resolved.config == RunConfig()
    assert resolved.provenance == {}


def test_precedence_flag_over_file_over_recipe_over_default(tmp_path):
    config = write(tmp_path / "c.toml", 'recipe = "tutorial"\nepochs = 5\nlr = 0.01\n')
    resolved = resolve_config(config_file=config, overrides=CLIOverrides(values={"lr": 0.05}))
    c, p = resolved.config, resolved.provenance
    assert (c.lr, p["lr"]) == (0.05, "command line")
    assert (c.epochs, p["epochs"]) == (5, f"config {config}")
    assert (c.batch_size, p["batch_size"]) == (4, "recipe tutorial")
    assert c.recipe == "tutorial"
    assert "eval_batch_size" not in p  # a default
    assert c.eval_batch_size == RunConfig().eval_batch_size


def test_cli_recipe_beats_the_config_files_recipe(tmp_path):
    config = write(tmp_path / "c.toml", 'recipe = "randomdemo"\n')
    resolved = resolve_config(recipe="tutorial", config_file=config)
    assert resolved.config.recipe == "tutorial"
    assert resolved.config.model == "lenet"


def test_nested_tables_merge_key_by_key(tmp_path):
    config = write(tmp_path / "c.toml", "[augment]\nflip = true\ntranslate = 2\n")
    resolved = resolve_config(config_file=config, overrides=CLIOverrides(augment={"translate": 4}))
    assert resolved.config.augment.flip is True
    assert resolved.config.augment.translate == 4
    assert resolved.provenance["augment.flip"] == f"config {config}"
    assert resolved.provenance["augment.translate"] == "command line"


def test_tutorial_recipe_is_exactly_the_tutorial():
    c = resolve_config(recipe="tutorial").config
    assert (c.model, c.dataset, c.optimizer, c.schedule) == ("lenet", "cifar10", "sgd", "constant")
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay) == (2, 4, 0.001, 0.9, 0.0)
    assert c.shuffle and c.mean == [0.5, 0.5, 0.5] and c.std == [0.5, 0.5, 0.5]
    assert not (c.augment.flip or c.augment.translate or c.augment.cutout)
    assert c.label_smoothing == 0.0


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"lr": -1.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": -3}, "epochs"),
        ({"momentum": 1.5}, "momentum"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_out_of_range_values_name_the_field_and_source(values, field):
    with pytest.raises(ConfigError) as info:
        resolve_config(overrides=CLIOverrides(values=values))
    message = str(info.value)
    assert f"'{field}'" in message and "command line" in message
    assert info.value.exit_code == 2
    assert "\n" not in message


def test_unknown_key_in_config_file_is_named(tmp_path):
    config = write(tmp_path / "c.toml", "epochs = 1\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match=r"Unknown config key 'learning_rate' \(from config .*c\.toml\)"):
        resolve_config(config_file=config)


def test_wrong_type_in_config_file(tmp_path):
    config = write(tmp_path / "c.toml", 'batch_size = "big"\n')
    with pytest.raises(ConfigError, match="'batch_size'.*c.toml.*'big'"):
        resolve_config(config_file=config)


def test_config_file_that_does_not_parse_names_the_line(tmp_path):
    config = write(tmp_path / "c.toml", "epochs = 1\nlr = = 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.toml' is not valid TOML: .*line 2"):
        resolve_config(config_file=config)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(config_file=tmp_path / "nope.toml")


def test_unknown_recipe_suggests():
    with pytest.raises(UnknownNameError, match=r"Unknown recipe 'tutorail'\. Did you mean 'tutorial'\?"):
        resolve_config(recipe="tutorail")


def test_unknown_model_in_config_file_names_the_file(tmp_path):
    config = write(tmp_path / "c.toml", 'model = "resnt18"\n')
    with pytest.raises(UnknownNameError) as info:
        resolve_config(config_file=config)
    message = str(info.value)
    assert "Unknown model 'resnt18' (from config " in message and "c.toml). Did you mean 'resnet18'?" in message
    assert "blitz list models" in message and "c.toml" in message


def test_every_registry_entry_parses_and_resolves():
    catalog = load_catalog()
    assert catalog.recipes, "registry.toml should define recipes"
    assert check_catalog(catalog) == []
    for name in catalog.recipes:  # every recipe is a valid config
        resolve_config(recipe=name)


def test_catalog_with_unknown_key_is_an_error(tmp_path):
    path = write(tmp_path / "r.toml", '[models.x]\nplugin = "lenet"\nflavour = "y"\n')
    with pytest.raises(ConfigError, match=r"'models\.x\.flavour'"):
        parse_catalog(path)


def test_catalog_recipe_with_unknown_config_key(tmp_path):
    path = write(tmp_path / "r.toml", '[recipes.fast]\ndescription = "d"\nepoks = 3\n')
    with pytest.raises(ConfigError, match=r"'recipes\.fast\.epoks'"):
        parse_catalog(path)


def test_catalog_entry_whose_plugin_is_missing_is_named(tmp_path):
    path = write(
        tmp_path / "r.toml",
        '[models.ghost]\nplugin = "nonexistent"\n[models.wrong]\nplugin = "lenet"\ncomponent = "lenet5"\n'
        '[recipes.bad]\ndescription = "d"\nmodel = "ghostnet"\n',
    )
    problems = check_catalog(parse_catalog(path))
    assert any(p.startswith("'models.ghost'") and "nonexistent" in p for p in problems)
    assert any(p.startswith("'models.wrong'") and "lenet5" in p for p in problems)
    assert any(p.startswith("'recipes.bad.model'") for p in problems)


@settings(max_examples=60, deadline=None)
@given(
    lr=st.floats(allow_nan=True, allow_infinity=True),
    batch_size=st.integers(min_value=-10, max_value=10_000),
    epochs=st.integers(min_value=-10, max_value=1000),
)
def test_config_values_are_accepted_or_rejected_with_a_named_field(lr, batch_size, epochs):
    # The bounds, written out independently of the model: lr finite in (0, 1e4], at least one
    # example per batch, 0..100,000 epochs.
    invalid = {
        field for field, ok in (
            ("lr", math.isfinite(lr) and 0 < lr <= 1e4),
            ("batch_size", batch_size >= 1),
            ("epochs", 0 <= epochs <= 100_000),
        ) if not ok
    }
    overrides = CLIOverrides(values={"lr": lr, "batch_size": batch_size, "epochs": epochs})
    try:
        config = resolve_config(overrides=overrides).config
    except ConfigError as exc:
        assert invalid, f"valid values refused: {exc}"
        assert any(f"'{field}'" in str(exc) for field in invalid), str(exc)
        assert exc.exit_code == 2
    else:
        assert not invalid, f"accepted invalid {sorted(invalid)}"
        assert (config.lr, config.batch_size, config.epochs) == (lr, batch_size, epochs)


@pytest.mark.parametrize(
    ("kind", "typed", "meant"),
    [
        ("dataset", "CIFAR10", "cifar10"),  # the tutorial's torchvision.datasets.CIFAR10
        ("optimizer", "SGD", "sgd"),  # the tutorial's optim.SGD
        ("strategy", "gpu", "cuda"),  # a synonym
        ("model", "resnt18", "resnet18"),  # a misspelling
        ("model", "res_net-18", "resnet18"),  # separators
    ],
)
def test_unknown_names_suggest_what_was_meant(kind: str, typed: str, meant: str) -> None:
    overrides = CLIOverrides(values={kind: typed})
    with pytest.raises(UnknownNameError, match=rf"Unknown {kind} '{typed}'\. Did you mean '{meant}'\?"):
        resolve_config(overrides=overrides)


def test_unknown_config_keys_suggest_the_key_meant(tmp_path) -> None:
    for text, meant in (("epochz = 3", "epochs"), ("batch-size = 3", "batch_size"), ("[augment]\nflips = true", "augment.flip")):
        path = write(tmp_path / "c.toml", text + "\n")
        with pytest.raises(ConfigError, match=rf"Did you mean '{meant}'\?"):
            resolve_config(config_file=path)
    path = write(tmp_path / "c.toml", "zzzzzz = 1\n")  # nothing close: the list instead
    with pytest.raises(ConfigError, match=r"Known keys: augment, batch_size, "):
        resolve_config(config_file=path)


def test_picking_another_component_drops_the_earlier_layers_options_for_it():
    """A recipe's options belong to its components: `--schedule onecycle` over airbench94_muon's
    linear schedule must not hand onecycle the linear schedule's `final` (it was refused)."""
    resolved = resolve_config(
        recipe="airbench94_muon", overrides=CLIOverrides(values={"schedule": "onecycle", "model": "resnet18"})
    )
    assert resolved.config.schedule_args == {} and resolved.config.model_args == {}
    assert not any(key.startswith(("schedule_args.", "model_args.")) for key in resolved.provenance)
    assert resolved.config.optimizer_args["head_lr"] == 1340.0  # the optimizer did not change: its options stay


def test_options_for_the_same_component_still_merge_key_by_key(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('schedule = "linear"\n[schedule_args]\nwarmup = 0.1\n')
    resolved = resolve_config(recipe="airbench94_muon", config_file=config)
    assert resolved.config.schedule_args == {"warmup": 0.1, "final": 0.0}
    assert resolved.provenance["schedule_args.warmup"] == f"config {config}"
    assert resolved.provenance["schedule_args.final"] == "recipe airbench94_muon"


@pytest.mark.parametrize("value", [float("inf"), float("nan"), [1.0, float("-inf")]])
def test_non_finite_component_options_are_refused_by_name(value):
    """TOML reads inf and nan; the saved config.toml (JSON-safe) could not hold them, and the run
    crashed with a traceback while writing it."""
    with pytest.raises(ConfigError, match=r"Invalid value for 'model_args' \(from command line\): option 'head_std' must be a finite number"):
        resolve_config(overrides=CLIOverrides(model_args={"head_std": value}))


def test_naming_the_same_component_through_its_alias_keeps_its_options(tmp_path):
    """`resnet18` is the catalog's name for `timm/resnet18`: switching between the two names is
    not picking another model, so the lower layer's model options stay."""
    config = tmp_path / "run.toml"
    config.write_text('model = "resnet18"\n[model_args]\ndrop_rate = 0.1\n')
    resolved = resolve_config(config_file=config, overrides=CLIOverrides(values={"model": "timm/resnet18"}))
    assert resolved.config.model == "timm/resnet18" and resolved.config.model_args == {"drop_rate": 0.1}
    resolved = resolve_config(config_file=config, overrides=CLIOverrides(values={"model": "timm/resnet50"}))
    assert resolved.config.model_args == {}  # another model: its options go


def test_an_optimizer_brings_its_registered_hyperparameters_where_nothing_set_them():
    alone = resolve_config(overrides=CLIOverrides(values={"optimizer": "muon"}))
    assert (alone.config.lr, alone.config.momentum, alone.config.weight_decay) == (0.02, 0.95, 0.0)
    assert alone.provenance["lr"] == alone.provenance["momentum"] == "optimizer muon"
    given = resolve_config(overrides=CLIOverrides(values={"optimizer": "muon", "lr": 0.05}))
    assert (given.config.lr, given.config.momentum) == (0.05, 0.95) and given.provenance["lr"] == "command line"
    adamw = resolve_config(overrides=CLIOverrides(values={"optimizer": "adamw"}))
    assert adamw.config.weight_decay == 0.01  # AdamW's own default; blitz's 0.0 had always overridden it


def test_rates_set_with_another_optimizer_do_not_pass_to_the_one_picked_above(tmp_path):
    """`--recipe tutorial --optimizer muon` must not train Muon at the tutorial's SGD rate, nor
    `--recipe lenet_fast --optimizer sgd` SGD at Muon's."""
    swapped = resolve_config(recipe="tutorial", overrides=CLIOverrides(values={"optimizer": "muon"}))
    assert (swapped.config.lr, swapped.config.momentum) == (0.02, 0.95)
    back = resolve_config(recipe="lenet_fast", overrides=CLIOverrides(values={"optimizer": "sgd"}))
    assert (back.config.lr, back.config.momentum, back.config.weight_decay) == (0.001, 0.9, 0.0)
    assert back.provenance["lr"] == "optimizer sgd"


def test_rates_set_for_the_same_optimizer_or_for_none_stay(tmp_path):
    same = tmp_path / "same.toml"
    same.write_text('optimizer = "muon"\nlr = 0.05\n')  # set for muon, then muon picked again
    resolved = resolve_config(config_file=same, overrides=CLIOverrides(values={"optimizer": "muon"}))
    assert (resolved.config.lr, resolved.config.momentum) == (0.05, 0.95)
    assert resolved.provenance["lr"] == f"config {same}"
    plain = tmp_path / "plain.toml"
    plain.write_text("lr = 0.05\nmomentum = 0.8\n")  # names no optimizer: the user's, whatever it is
    resolved = resolve_config(config_file=plain, overrides=CLIOverrides(values={"optimizer": "muon"}))
    assert (resolved.config.lr, resolved.config.momentum) == (0.05, 0.8)
    over = tmp_path / "over.toml"
    over.write_text('optimizer = "muon"\nlr = 0.01\n')  # set together with the optimizer, over a recipe
    resolved = resolve_config(recipe="tutorial", config_file=over)
    assert (resolved.config.lr, resolved.config.momentum) == (0.01, 0.95)


def test_airbench94_muon_compiles_with_cuda_graphs_unless_told_otherwise():
    """On the H100, --compile in PyTorch's default mode trained no faster than eager (2.74 against
    2.25 s timed); reduce-overhead (CUDA graphs) took 1.92 s: the recipe's mode, a default only."""
    compiled = resolve_config(recipe="airbench94_muon", overrides=CLIOverrides(values={"compile": True}))
    assert compiled.config.compile_mode == "reduce-overhead"
    assert compiled.provenance["compile_mode"] == "recipe airbench94_muon"
    assert not resolve_config(recipe="airbench94_muon").config.compile  # eager unless asked
    chosen = resolve_config(recipe="airbench94_muon",
                            overrides=CLIOverrides(values={"compile": True, "compile_mode": "default"}))
    assert chosen.config.compile_mode == "default"


@pytest.mark.parametrize(("recipe", "optimizer"), [("airbench94", "airbench_sgd"), ("airbench94_muon", "airbench_muon")])
def test_the_airbench_optimizers_register_their_recipes_rates(recipe, optimizer):
    from blitz.catalog import resolve

    registered = resolve("optimizers", optimizer).entry.metadata["hyperparameters"]
    config = resolve_config(recipe=recipe).config
    assert registered == {"lr": config.lr, "momentum": config.momentum, "weight_decay": config.weight_decay}


@pytest.mark.parametrize(
    ("field", "key", "hint"),
    [("optimizer_args", "lr", "use --lr"), ("optimizer_args", "momentum", "use --momentum"),
     ("model_args", "num_classes", "it comes from the dataset"), ("dataset_args", "root", "use --data-root"),
     ("dataset_args", "splits", r"blitz asks for the splits a command reads \('blitz eval' only the test split\)"),
     ("schedule_args", "total_steps", "it comes from --epochs and the data"),
     # a family's member comes from the name: `--model resnet18 --model-arg variant=resnet50` trained resnet18
     ("model_args", "variant", r"it comes from the component's name \(--model timm/resnet50 builds timm's resnet50\)")],
)
def test_an_option_blitz_passes_itself_is_refused_as_a_component_option(field, key, hint):
    """`--optimizer-arg momentum=0.5` crashed the factory call ("got multiple values for keyword argument")."""
    with pytest.raises(ConfigError, match=rf"Invalid value for '{field}' \(from command line\): option '{key}' is not a component option: {hint}"):
        resolve_config(overrides=CLIOverrides(**{field: {key: 1}}))


def test_relative_paths_are_kept_absolute_so_a_run_finds_its_data_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "w.pt").write_bytes(b"")
    config = RunConfig(
        data_root="mydata", dataset_args={"path": "imgs", "test_path": "missing", "length": 3},
        model_args={"pretrained_file": "w.pt", "width": 2},
    )
    assert config.data_root == tmp_path / "mydata"  # absolute even before it exists (--download makes it)
    assert config.dataset_args == {"path": str(tmp_path / "imgs"), "test_path": "missing", "length": 3}
    assert config.model_args == {"pretrained_file": str(tmp_path / "w.pt"), "width": 2}


def test_a_catalog_entry_that_does_not_resolve_as_it_says_is_refused_when_used_and_flagged_when_listed(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from blitz.cli import app
    from blitz.errors import ConfigError

    path = write(
        tmp_path / "r.toml",
        '[models.mini]\nplugin = "nonexistent"\ncomponent = "lenet"\n'
        '[models.mini2]\nplugin = "lenet"\ncomponent = "does_not_exist"\n'
        '[models.linear]\nplugin = "lenet"\n[models.ghost]\nplugin = "nonexistent"\n',  # no component: the name itself
    )
    catalog = parse_catalog(path)
    monkeypatch.setenv("BLITZ_REGISTRY", str(path))
    with pytest.raises(ConfigError, match="says model 'mini' comes from plugin 'nonexistent', but plugin 'lenet' registers 'lenet'"):
        resolve("models", "mini", catalog)
    with pytest.raises(ConfigError, match="maps model 'mini2' to 'does_not_exist', which no loaded plugin registers"):
        resolve("models", "mini2", catalog)
    listed = CliRunner().invoke(app, ["list", "models", "--json"])
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert "comes from plugin 'nonexistent'" in rows["mini"]["problem"] and "does_not_exist" in rows["mini2"]["problem"]
    assert "says model 'linear' comes from plugin 'lenet'" in rows["linear"]["problem"]
    assert "maps model 'ghost' to 'ghost', which no loaded plugin registers" in rows["ghost"]["problem"]
    assert "problem" not in rows["lenet"]


def test_registry_defaults_are_the_runs_own_options_kept_for_a_resume(tmp_path, monkeypatch):
    """vit_tiny's patch_size comes from registry.toml: shown, saved, and kept for --resume
    even after registry.toml changes (it then built another model and refused the checkpoint)."""
    import tomllib

    from typer.testing import CliRunner

    from blitz.catalog import catalog_path
    from blitz.cli import app
    from blitz.resolve import resolve_config

    resolved = resolve_config(overrides=CLIOverrides(values={"model": "vit_tiny"}))
    assert resolved.config.model_args == {"patch_size": 4}
    assert resolved.provenance["model_args.patch_size"] == "registry models.vit_tiny"
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--model", "vit_tiny", "--dataset", "random", "--dataset-arg", "length=8",
                                      "--dataset-arg", "test_length=4", "--batch-size", "4", "--epochs", "1",
                                      "--strategy", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert tomllib.loads((out / "config.toml").read_text())["model_args"] == {"patch_size": 4}
    changed = tmp_path / "registry.toml"
    changed.write_text(catalog_path().read_text().replace("patch_size = 4", "patch_size = 8"))
    monkeypatch.setenv("BLITZ_REGISTRY", str(changed))
    assert resolve_config(resume=str(out)).config.model_args == {"patch_size": 4}
    assert resolve_config(overrides=CLIOverrides(values={"model": "vit_tiny"})).config.model_args["patch_size"] == 8


def test_switching_component_drops_only_the_options_given_with_the_old_one():
    from blitz.config import Layer, merge_layers

    layers = [
        Layer("recipe r", {"schedule": "onecycle", "schedule_args": {"pct_start": 0.3}}),
        Layer("config c.toml", {"schedule_args": {"warmup": 0.05}}),  # for whichever schedule runs
        Layer("command line", {"schedule": "cosine"}),
    ]
    values, provenance = merge_layers(layers)
    assert values["schedule_args"] == {"warmup": 0.05} and provenance["schedule_args.warmup"] == "config c.toml"
    assert "schedule_args.pct_start" not in provenance
    named = [Layer("config c.toml", {"schedule": "onecycle", "schedule_args": {"pct_start": 0.3}}),
             Layer("command line", {"schedule": "cosine"})]
    assert merge_layers(named)[0]["schedule_args"] == {}
