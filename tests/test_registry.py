import importlib
import importlib.metadata
import pkgutil
import sys
from dataclasses import dataclass

import pytest

import tokenzip as tz
import tokenzip.method as tz_method
from tokenzip import registry
from tokenzip.errors import TokenzipError


@pytest.fixture
def toy_methods():
    @dataclass
    class ToyKV(tz_method.Method):
        """A toy kv method."""

        name = "toy"
        stage = "kv"
        paper = "nobody, 2026"
        window: int = 4

    @dataclass
    class ToyPrompt(tz_method.Method):
        """A toy prompt method."""

        name = "toy"
        stage = "prompt"
        paper = "nobody, 2026"

    tz_method.register(ToyKV)
    tz_method.register(ToyPrompt)
    yield ToyKV, ToyPrompt
    tz_method.METHODS.remove(("kv", "toy"))
    tz_method.METHODS.remove(("prompt", "toy"))


def test_get_method_by_stage(toy_methods):
    m = tz.get_method("toy", stage="kv", ratio=0.5, window=8)
    assert isinstance(m, toy_methods[0]) and m.ratio == 0.5 and m.window == 8
    assert isinstance(tz.get_method("prompt.toy"), toy_methods[1])


def test_ambiguous_name_asks_for_stage(toy_methods):
    with pytest.raises(TokenzipError, match="kv.toy"):
        tz.get_method("toy")


def test_unknown_method_lists_names(toy_methods):
    with pytest.raises(TokenzipError, match="Available: .*toy"):
        tz.get_method("tooy", stage="kv")


def test_unknown_parameter(toy_methods):
    with pytest.raises(TokenzipError, match="window"):
        tz.get_method("kv.toy", windw=3)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, "0.5", True])
def test_ratio_out_of_range(toy_methods, ratio):
    with pytest.raises(TokenzipError, match="ratio"):
        tz.get_method("kv.toy", ratio=ratio)


@pytest.mark.parametrize("budget", [0, -3, 2.5])
def test_bad_budget(toy_methods, budget):
    with pytest.raises(TokenzipError, match="budget"):
        tz.get_method("kv.toy", budget=budget)


def test_kept_counts(toy_methods):
    assert tz.get_method("kv.toy", ratio=0.5).kept(101) == 51
    assert tz.get_method("kv.toy", ratio=0.0).kept(7) == 7
    assert tz.get_method("kv.toy", budget=10).kept(7) == 7
    assert tz.get_method("kv.toy", budget=10).kept(70) == 10


def test_methods_rows(toy_methods):
    rows = [r for r in tz.methods("kv") if r["name"] == "toy"]
    assert rows and rows[0]["params"] == {"ratio": 0.0, "budget": None, "window": 4}
    assert rows[0]["paper"] == "nobody, 2026"


def test_compress_rejects_non_model_methods(toy_methods):
    with pytest.raises(TokenzipError, match="does not hook"):
        with tz.compress(object(), tz.get_method("prompt.toy")):
            pass
    with pytest.raises(TokenzipError, match="at least one method"):
        with tz.compress(object()):
            pass


def test_auto_ratio_only_where_the_method_can_choose(toy_methods):
    with pytest.raises(TokenzipError, match="kv.toy cannot choose its own ratio.*ratio='auto'"):
        tz.get_method("kv.toy", ratio="auto")
    toy_methods[0].auto_ratio = True
    try:
        m = tz.get_method("kv.toy", ratio="auto")
        assert m.ratio == "auto" and m.kept(50) == 50  # an auto method decides per context
        assert "kv.toy" in tz_method.auto_methods()
    finally:
        toy_methods[0].auto_ratio = False


@pytest.mark.parametrize("package", ["tokenzip.kv.methods", "tokenzip.layers.methods", "tokenzip.prompt.methods"])
def test_every_file_of_a_methods_package_registers_a_method(package):
    """A new method is one file: the package imports all its modules, and each one registers something."""
    path = importlib.import_module(package).__path__
    files = {f"{package}.{m.name}" for m in pkgutil.iter_modules(path) if not m.name.startswith("_")}
    registering = {cls.__module__ for cls in tz_method.registered()}
    assert files and files <= registering, sorted(files - registering)


PLUGIN = '''
from dataclasses import dataclass

from tokenzip.method import Method, register


@register
@dataclass
class PluginKV(Method):
    """A kv method from another package."""

    name = "plugin_toy"
    stage = "kv"
    paper = "nobody, 2026"
'''


def _entry_points_returning(*points):
    real = importlib.metadata.entry_points

    def entry_points(**selection):
        if selection.get("group") == tz_method.ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints(points)
        return real(**selection)

    return entry_points


def test_a_method_from_an_entry_point_is_found_by_name(tmp_path, monkeypatch):
    (tmp_path / "tz_plugin_toy.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint("plugin_toy", "tz_plugin_toy", tz_method.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points_returning(point))
    monkeypatch.setattr(tz_method.METHODS, "_entries", dict(tz_method.METHODS))  # restored after the test
    monkeypatch.setattr(tz_method.METHODS, "_loaded", False)
    try:
        method = tz.get_method("plugin_toy", ratio=0.5)
        assert type(method).__module__ == "tz_plugin_toy" and method.stage == "kv"
        assert any(row["name"] == "plugin_toy" for row in tz.methods("kv"))
    finally:
        sys.modules.pop("tz_plugin_toy", None)


def test_a_broken_entry_point_names_itself(monkeypatch):
    point = importlib.metadata.EntryPoint("broken", "tz_no_such_module_here", tz_method.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points_returning(point))
    monkeypatch.setattr(tz_method.METHODS, "_loaded", False)
    with pytest.raises(TokenzipError, match="tokenzip.methods entry point 'broken' = 'tz_no_such_module_here'"):
        tz.get_method("snapkv")


def test_the_generic_registry_checks_the_base_class_refuses_a_taken_key_and_names_the_known_ones():
    class Base:
        pass

    class Good(Base):
        pass

    things = registry.Registry("thing", Base)
    assert things.add("good", Good) is Good and things.add("good", Good) is Good  # the same entry again: fine
    assert things.add("one", Base()) is things["one"]  # instances of the base class too
    with pytest.raises(TypeError, match="a thing must be a Base subclass"):
        things.add("bad", int)
    with pytest.raises(TypeError, match="thing 'good' is registered twice"):
        things.add("good", Base)
    assert list(things) == ["good", "one"] and "good" in things and "bad" not in things
    with pytest.raises(TokenzipError, match="unknown thing 'goo'. Did you mean 'good'"):
        things.get_or_raise("goo")


def test_families_models_and_methods_share_the_generic_registry():
    from tokenzip.models.catalog import MODELS
    from tokenzip.models.families import FAMILIES

    assert all(isinstance(r, registry.Registry) for r in (tz_method.METHODS, FAMILIES, MODELS))
    assert ("kv", "snapkv") in tz_method.METHODS and "llama" in FAMILIES and "gemma-3-270m" in MODELS
