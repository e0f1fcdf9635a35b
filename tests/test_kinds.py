"""The one table of component kinds agrees with what must spell them out: hooks, catalog, config."""

from __future__ import annotations

from blitz import hookspecs
from blitz.catalog import Catalog
from blitz.config import RunConfig
from blitz.kinds import COMPONENT_KINDS, KINDS, NAME_FIELDS, OPTIONS_OF


def test_every_kind_has_its_hook_its_registry_table_and_its_config_fields():
    for kind in COMPONENT_KINDS:
        assert callable(getattr(hookspecs, f"register_{kind.name}")), kind.name
        assert kind.field is None or kind.field in RunConfig.model_fields, kind.field
        assert kind.options is None or kind.options in RunConfig.model_fields, kind.options
    assert set(Catalog.model_fields) == {*KINDS, "recipes"}  # registry.toml's tables
    hooks = {name.removeprefix("register_") for name in dir(hookspecs) if name.startswith("register_")}
    assert hooks == {*KINDS, "recipes"}


def test_the_derived_maps_name_fields_and_options():
    assert NAME_FIELDS["model"] == "models" and NAME_FIELDS["strategy"] == "strategies"
    assert "loggers" not in NAME_FIELDS.values()  # a list of names, not one
    assert OPTIONS_OF == {"model": "model_args", "dataset": "dataset_args", "optimizer": "optimizer_args",
                          "schedule": "schedule_args"}


def test_the_calls_list_plugins_check_binds_pass_what_blitz_passes_every_factory():
    """--check binds stand-in values for the keywords blitz passes; the two lists are one contract."""
    from blitz.build import _FACTORY_CALLS, supplied_by_blitz

    assert set(_FACTORY_CALLS) == {kind.noun for kind in COMPONENT_KINDS}
    for noun, (_, _, keywords) in _FACTORY_CALLS.items():
        optional = {"variant", "splits"}  # families' only; data sources that name it only
        assert set(keywords) == supplied_by_blitz(noun.capitalize()) - optional, noun
