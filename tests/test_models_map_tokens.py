"""The 7x7 map as tokens (MapTokenizer) and the embedder's frozen affine head (EmbedderHead)."""
from __future__ import annotations

import pytest
import torch

from viewdiff.models.map_tokens import EmbedderHead, MapTokenizer


def test_tokens_per_cell_and_a_zero_initialised_fold():
    tok = MapTokenizer(channels=64, size=7, token_dim=32)
    cells = torch.randn(2, 64, 7, 7)
    photo, mirror = tok.tokenize(cells, "photo"), tok.tokenize(cells, "mirror")
    assert photo.shape == (2, 49, 32) and not torch.equal(photo, mirror)   # the view code tells them apart
    assert tok.labels("photo")[:2] == ["photo 0,0", "photo 0,1"] and tok.labels("mirror")[-1] == "mirror 6,6"
    assert torch.equal(tok.detokenize(photo), torch.zeros(2, 64, 7, 7))    # a fresh model changes nothing
    with torch.no_grad():
        tok.fold.weight.normal_()
    assert tok.detokenize(photo).shape == (2, 64, 7, 7)
    with pytest.raises(ValueError, match=r"\[B, 64, 7, 7\]"):
        tok.tokenize(torch.randn(2, 32, 7, 7), "photo")


def test_head_is_the_embedders_affine_map_and_refuses_another_shape():
    head = EmbedderHead(d_model=8, channels=2, size=7)
    assert not head.is_set
    weight, bias = torch.randn(8, 98), torch.randn(8)
    head.set(weight, bias)
    maps = torch.randn(3, 2, 7, 7)
    assert torch.allclose(head(maps), maps.flatten(1) @ weight.T + bias, atol=1e-5)
    assert torch.allclose(head(maps, bias=False), maps.flatten(1) @ weight.T, atol=1e-5)   # a change of a change
    assert "weight" in head.state_dict() and not any(p.requires_grad for p in head.parameters())
    with pytest.raises(ValueError, match="expects"):
        head.set(torch.randn(8, 50), bias)
