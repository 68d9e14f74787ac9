"""The notebooks' check helpers must catch wrong answers, or every notebook check is hollow."""

from pathlib import Path

import pytest
import torch

from msanet_lib import course


def test_assert_close_accepts_equal_and_rejects_different() -> None:
    course.assert_close(torch.ones(3), torch.ones(3), "ones")
    with pytest.raises(AssertionError, match="max abs difference"):
        course.assert_close(torch.ones(3), torch.tensor([1.0, 1.0, 1.1]), "ones")
    with pytest.raises(AssertionError, match="shape"):
        course.assert_close(torch.ones(3), torch.ones(4), "ones")


def _check_double(fn) -> None:
    assert fn(torch.tensor(2.0)).item() == 4.0, "doubling 2 should give 4"
    assert fn(torch.tensor(3.0)).item() == 6.0, "doubling 3 should give 6"


def test_exercise_uses_learner_code_then_solution(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "nb.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.setattr(course, "SOLUTIONS_DIR", tmp_path)
    assert course.exercise(lambda x: 2 * x, "nb", "double", _check_double) is True
    assert course.exercise(lambda x: None, "nb", "double", _check_double) is False
    with pytest.raises(AssertionError, match="doubling"):
        course.exercise(lambda x: 3 * x, "nb", "double", _check_double)


def test_exercise_reports_a_wrong_solution_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "nb.py").write_text("def double(x):\n    return x\n")
    monkeypatch.setattr(course, "SOLUTIONS_DIR", tmp_path)
    with pytest.raises(AssertionError):
        course.exercise(lambda x: None, "nb", "double", _check_double)


def test_exercise_proves_its_check_rejects_the_known_mistakes(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "nb.py").write_text(
        "def double(x):\n    return 2 * x\n\n"
        "def _plus_two(x):\n    '''adds 2 instead of doubling'''\n    return x + 2\n\n"
        "MISTAKES = {'double': [_plus_two]}\n")
    monkeypatch.setattr(course, "SOLUTIONS_DIR", tmp_path)
    assert len(course.known_mistakes("nb", "double")) == 1
    assert course.exercise(lambda x: None, "nb", "double", _check_double) is False

    def weak_check(fn) -> None:  # 2 + 2 == 2 * 2: cannot tell the mistake apart
        assert fn(torch.tensor(2.0)).item() == 4.0

    with pytest.raises(AssertionError, match="adds 2 instead of doubling"):
        course.exercise(lambda x: None, "nb", "double", weak_check)


def test_reject_mistakes_counts_errors_as_rejections() -> None:
    def raises(x):
        raise RuntimeError("shape mismatch")

    assert course.reject_mistakes(_check_double, [raises, lambda x: x], "double") == 2


def test_stage2_experiment_commands_parse_and_apply_the_change(capsys) -> None:
    from msanet_lib.evaluation.__main__ import parse_args
    from msanet_lib.training.__main__ import build_parser, overrides_from_args
    from msanet_lib.training.config import load_config

    train, evaluate = course.stage2_experiment({"model.use_attention": False,
                                                "model.hyper_dim": 8}, "exp_test")
    assert capsys.readouterr().out.count("\n") == 2  # both commands printed, nothing run
    args = build_parser().parse_args(train[1:])
    cfg = load_config(args.config, overrides_from_args(args))
    assert cfg.model.use_attention is False and cfg.model.hyper_dim == 8
    assert cfg.meta.epochs == 3 and cfg.meta.base_learner == str(course.toy_checkpoint(0))
    ev = parse_args(evaluate[1:])
    assert ev.seeds == [510] and ev.episodes == 1000
    assert str(ev.checkpoint).startswith(str(args.out))


def test_toy_model_with_applies_overrides_and_shots() -> None:
    net = course.toy_model_with({"model.use_attention": False, "shots": 5,
                                 "model.kshot_order": "bam"})
    assert net.config.shots == 5 and net.config.kshot_order == "bam"
    assert getattr(net, "gam", None) is None and not net.training
    (train, evaluate) = course.stage2_experiment({"shots": 5}, "exp_k", run=False)
    assert train[train.index("--shots") + 1] == "5" and "meta_5shot" in evaluate[2]
