"""One CLI convention for every ``ocrvl`` command (issue 25): ``--help`` lists every key of the command's config
with its default, an unknown key is one did-you-mean line and exit 2, and ``key=value`` and ``--key-name VALUE``
build the same config. In-process (``main(argv)`` with capsys): no subprocess, nothing runs past parsing."""
from __future__ import annotations

import json
import typing

import pytest
from pydantic import BaseModel

from ocrvl_ray.cli import COMMANDS, command_spec, main
from ocrvl_ray.core.config import ConfigError

#: every command and sub-command, as typed after ``ocrvl``
ALL = [["prepare"], ["lookup", "build"], ["lookup", "import"], ["layout"], ["train"], ["merge"], ["fix"],
       ["verify"], ["reshard"], ["inspect"], ["eval"], ["eval", "run"], ["eval", "score"], ["pipeline"], ["cluster-check"],
       ["demo-loop"], ["convert-detector"]]
IDS = [" ".join(c) for c in ALL]


def test_every_command_is_covered():
    assert {c[0] for c in ALL} == set(COMMANDS)


def _spec(cmd: list[str]):
    return command_spec(cmd[0], cmd[1:])[1]


def _text(v) -> str:
    """A default as the help shows it (and as one would type it after key=)."""
    if isinstance(v, BaseModel):
        v = v.model_dump(mode="json")
    if v is None or isinstance(v, (bool, int, float, list, dict)):
        return json.dumps(v).replace(", ", ",").replace('"', "")
    return str(v) or "''"


def _leaves(model: type[BaseModel], values: BaseModel | None = None, prefix: str = ""):
    """(dotted key, default text) of every leaf key: a section's keys carry the section default's values."""
    for name, f in model.model_fields.items():
        if values is not None:
            default = getattr(values, name)
        else:
            default = "(required)" if f.is_required() else f.get_default(call_default_factory=True)
        sub = next((a for a in (f.annotation, *typing.get_args(f.annotation))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None and (default is None or isinstance(default, BaseModel)):
            yield from _leaves(sub, default if isinstance(default, BaseModel) else None, f"{prefix}{name}.")
        else:
            yield prefix + name, default if default == "(required)" else _text(default)


@pytest.mark.parametrize("cmd", ALL, ids=IDS)
def test_help_lists_every_key_with_its_default(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: ocrvl {cmd[0]}")
    listed = {ln.split()[0] for ln in text.split("config keys (defaults shown):\n", 1)[1].splitlines()
              if ln.startswith("  ") and not ln.startswith("   ")}
    want = {f"{key}={default}" for key, default in _leaves(_spec(cmd).model())}
    assert want <= listed, sorted(want - listed)


def _first_key(cmd):
    return next(iter(_spec(cmd).model().model_fields))


@pytest.mark.parametrize("cmd", [c for c in ALL if c != ["train"]], ids=[i for i in IDS if i != "train"])
def test_unknown_key_is_one_did_you_mean_line(cmd, capsys):
    key = _first_key(cmd)
    assert main([*cmd, f"{key}x=1"]) == 2
    err = capsys.readouterr().err
    assert err == f"ocrvl {cmd[0]}: error: unknown config key '{key}x'; did you mean '{key}'?\n"
    flag = "--" + key.replace("_", "-")
    assert main([*cmd, flag + "x", "1"]) == 2
    assert capsys.readouterr().err == f"ocrvl {cmd[0]}: error: unknown option '{flag}x'; did you mean '{flag}'?\n"


def test_train_passes_unknown_keys_to_erniekit_but_refuses_unknown_options(capsys):
    """train's other keys are erniekit's (kept as before); a misspelt --flag of ours is still refused."""
    args = _spec(["train"]).parse(["max_stepz=3", "num_workers=2"])
    assert args.erniekit == {"max_stepz": 3} and args.ours.num_workers == 2
    assert main(["train", "--num-worker", "2"]) == 2
    assert capsys.readouterr().err == ("ocrvl train: error: unknown option '--num-worker'; "
                                       "did you mean '--num-workers'?\n")


# -- key=value and --flag give the same config -----------------------------------------------------------------

def _sample(annotation, default):
    """A valid non-default value for a key: (text for key=value, argv for --flag given the flag name)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if typing.get_origin(annotation) is typing.Union else [annotation]
    a = args[0]
    if typing.get_origin(a) is typing.Literal:
        choice = next(c for c in typing.get_args(a) if c != default)
        return str(choice), lambda f: [f, str(choice)]
    if a is bool or bool in args:
        value = not default if isinstance(default, bool) else True
        return str(value).lower(), lambda f: [f if value else "--no-" + f[2:]]
    if typing.get_origin(a) is list or a is list:
        return "[p1,p2]", lambda f: [f, "p1", "p2"]
    if a is int:
        return "3", lambda f: [f, "3"]
    if a is float:
        return "0.5", lambda f: [f, "0.5"]
    return "v7", lambda f: [f, "v7"]


SPECIAL = {"max_shard_size": "7MB", "model_version": "1.5", "cluster": "c.yaml", "stages": None, "shards": "3"}


def _cases():
    for cmd in ALL:
        model = _spec(cmd).model()
        required = [f"{k}={SPECIAL.get(k) or 'r'}" if typing.get_origin(f.annotation) is not list else f"{k}=[r]"
                    for k, f in model.model_fields.items() if f.is_required()]
        from ocrvl_ray.core.config import flag_names
        for flag, key in flag_names(model).items():
            f = model.model_fields[key]
            if key in SPECIAL:
                if SPECIAL[key] is None:
                    continue
                text, argv = SPECIAL[key], (lambda v: lambda fl: [fl, v])(SPECIAL[key])
            else:
                text, argv = _sample(f.annotation, f.default)
            yield pytest.param(cmd, [r for r in required if not r.startswith(key + "=")], key, text, argv(flag),
                               id=f"{' '.join(cmd)}:{key}")


def _parsed(cmd, argv):
    cfg = _spec(cmd).parse(argv)
    if cmd == ["train"]:
        return cfg.ours.model_dump(), cfg.erniekit, cfg.dry_run
    return cfg.model_dump()


@pytest.mark.parametrize("cmd,required,key,text,flag_argv", list(_cases()))
def test_key_value_and_flag_give_the_same_config(cmd, required, key, text, flag_argv):
    by_key = _parsed(cmd, [*required, f"{key}={text}"])
    assert _parsed(cmd, [*required, *flag_argv]) == by_key
    if not _spec(cmd).model().model_fields[key].is_required():
        assert by_key != _parsed(cmd, required) or cmd == ["train"] and key == "dry_run"   # the key took effect


def test_documented_forms_give_the_documented_config():
    """The README/docs forms: repeated --model, positional paths, --html with and without a file, --no-verify."""
    ev = _spec(["eval"]).parse(["--model", "base=/m/b", "--model", "ft=/m/f", "--data", "v.lmdb", "limit=5"])
    assert (ev.models, ev.data, ev.limit) == (["base=/m/b", "ft=/m/f"], "v.lmdb", 5)
    assert ev == _spec(["eval"]).parse(["models=[base=/m/b,ft=/m/f]", "data=v.lmdb", "--limit=5"])
    pr = _spec(["prepare"]).parse(["--labels", "a", "b", "--images", "i", "--out", "m.parquet", "split=valid",
                                   "--no-ray", "--quiet"])
    assert (pr.labels, pr.images, pr.out, pr.split, pr.ray, pr.quiet) == (["a", "b"], ["i"], "m.parquet", "valid",
                                                                         False, True)
    ins = _spec(["inspect"])
    assert (ins.parse(["x.lmdb", "--html", "--strict"]).html, ins.parse(["--html", "r.html", "x.lmdb"]).lmdb) == \
        (True, "x.lmdb")
    assert ins.parse(["x.lmdb", "--json", "r.json"]).json_file == "r.json"
    cc = _spec(["cluster-check"]).parse(["cluster.yaml", "layout.yaml", "--train-workers", "4"])
    assert (cc.cluster, cc.layout, cc.train_workers) == ("cluster.yaml", "layout.yaml", 4)
    lb = _spec(["lookup", "build"]).parse(["r1", "r2", "--out", "l.parquet", "--no-ray"])
    assert (lb.roots, lb.out, lb.ray) == (["r1", "r2"], "l.parquet", False)
    mg = _spec(["merge"]).parse(["--base", "b", "--lora", "l", "--out", "o", "--max-shard-size", "40KB", "--no-verify"])
    assert (mg.max_shard_bytes, mg.verify) == (40_000, False)
    with pytest.raises(ConfigError, match="argument 'extra' is not lmdb, key=value or --option"):
        ins.parse(["x.lmdb", "extra"])


def test_missing_required_key_is_one_line(capsys):
    assert main(["verify", "--export", "e"]) == 2
    assert capsys.readouterr().err == "ocrvl verify: error: config key 'base' is required (give base=...)\n"
    assert main(["lookup"]) == 2
    assert capsys.readouterr().err == "ocrvl lookup: error: give the action first: ocrvl lookup build | import ...\n"


def test_unknown_command_is_one_line(capsys):
    assert main(["inpsect", "x.lmdb"]) == 2
    assert capsys.readouterr().err == "ocrvl: error: unknown command 'inpsect'; did you mean 'inspect'?\n"
    assert main(["--help"]) == 0 and "cluster-check" in capsys.readouterr().out
