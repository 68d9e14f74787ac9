"""Numerical equivalence with the authors' MSANet (tests/fixtures/authors_golden/README.md).

The fixtures hold the outputs of the authors' unmodified model code on CPU in float32 for
deterministic weights that are rebuilt here from the state-dict key names. Our model must have
the authors' state-dict keys in the authors' order, and reproduce final_out, meta_out and
base_out (and the intermediates that localise a mismatch) within 1e-4 max abs.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import pytest
import torch

from msanet_lib.model.msanet import MSANet, MSANetConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "authors_golden"
TOL = 1e-4
CASES = [
    ("msanet_resnet50_1shot.pt", "resnet50", 1),
    ("msanet_resnet50_5shot.pt", "resnet50", 5),
    ("msanet_vgg_1shot.pt", "vgg16_bn", 1),
    ("msanet_vgg_5shot.pt", "vgg16_bn", 5),
]


def rebuild_state_dict(keys: list[str], vectors: dict[str, torch.Tensor], reference: dict) -> dict:
    """The fixture's weights: >= 2-D entries from a crc32-seeded generator, the rest stored."""
    state = {}
    for key in keys:
        if key in vectors:
            state[key] = vectors[key].clone()
            continue
        shape = reference[key].shape
        gen = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
        u = torch.rand(shape, generator=gen, dtype=torch.float64)
        fan_in = math.prod(shape[1:])
        state[key] = ((2 * u - 1) * math.sqrt(6 / fan_in)).to(torch.float32)
    return state


def load_golden_model(data: dict, backbone: str, shots: int) -> MSANet:
    model = MSANet(MSANetConfig(backbone=backbone, shots=shots, num_base_classes=16))
    ours = model.state_dict()
    assert list(ours) == data["state_dict_keys"], "state-dict keys or their order differ"
    model.load_state_dict(rebuild_state_dict(data["state_dict_keys"], data["vectors"], ours))
    return model.eval()


@pytest.mark.parametrize(("name", "backbone", "shots"), CASES)
def test_golden_equivalence(name: str, backbone: str, shots: int) -> None:
    data = torch.load(FIXTURES / name)
    assert data["backbone"].startswith(backbone[:3]) and data["shot"] == shots
    model = load_golden_model(data, backbone, shots)
    with torch.no_grad():
        feats = model.forward_features(data["x"], data["s_x"], data["s_y"])
        out = model(data["x"], data["s_x"], data["s_y"])
    errors = {
        "similarity_maps": feats["similarity_maps"],
        "merge_feat": feats["merge_feat"],
        "meta_logits_low": feats["meta_logits_low"],
        "base_logits_low": feats["base_logits_low"],
        "final_out": out.final_out,
        "meta_out": out.meta_out,
        "base_out": out.base_out,
    }
    report = {}
    for key, ours in errors.items():
        assert ours.shape == data[key].shape, key
        report[key] = (ours - data[key]).abs().max().item()
    assert all(err <= TOL for err in report.values()), report
