"""Pose-conditioned LoRA attention: shapes, normalised weights, pose dependence, tokenizer, frozen bases."""
from __future__ import annotations

import pytest
import torch

from viewdiff.models.pose_attention import EmbeddingTokenizer, PoseConditionedLoRAAttention, PoseEmbedding

from model_test_utils import randomize_lora_up


def test_token_sequence_shapes_and_weights_sum_to_one():
    torch.manual_seed(0)
    attn = PoseConditionedLoRAAttention(64, num_heads=4, rank=4)
    x, pose = torch.randn(3, 10, 64), torch.randn(3, 3) * 30
    out, weights = attn(x, pose, return_attention=True)
    assert out.shape == (3, 10, 64) and weights.shape == (3, 4, 10, 10)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 10))
    torch.testing.assert_close(attn(x, pose), out)   # without weights: the fused kernel, the same function


def test_embedding_input_is_split_into_tokens_plus_a_pose_token():
    torch.manual_seed(0)
    attn = PoseConditionedLoRAAttention(512, num_heads=8)
    emb = torch.randn(2, 512)
    out, weights = attn(emb, torch.zeros(2, 3), return_attention=True)
    assert out.shape == (2, 512) and weights.shape == (2, 8, 17, 17)  # pose token + 16 tokens of 32 dims
    assert attn.tokenizer.labels == ["pose"] + [f"e{i}" for i in range(16)]
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 8, 17))
    # a non-trivial map: not uniform, and each token's row differs
    assert weights.std(-1).mean() > 1e-3


def test_pose_changes_the_attention():
    torch.manual_seed(0)
    attn = PoseConditionedLoRAAttention(128, num_heads=4)
    emb = torch.randn(2, 128)
    frontal = torch.zeros(2, 3)
    profile = torch.tensor([[60.0, 0, 0], [-60.0, 10, 0]])
    _, w0 = attn(emb, frontal, return_attention=True)
    _, w1 = attn(emb, profile, return_attention=True)
    assert (w0 - w1).abs().max() > 1e-4  # through the pose token, already at init

    tokens = torch.randn(2, 6, 128)
    _, t0 = attn(tokens, frontal, return_attention=True)
    _, t1 = attn(tokens, profile, return_attention=True)
    assert torch.allclose(t0, t1)  # token input: pose acts through LoRA only, a no-op while up = 0
    randomize_lora_up(attn, 0.2)
    _, t0 = attn(tokens, frontal, return_attention=True)
    _, t1 = attn(tokens, profile, return_attention=True)
    assert (t0 - t1).abs().max() > 1e-4


def test_missing_pose_means_frontal():
    torch.manual_seed(0)
    attn = PoseConditionedLoRAAttention(64, num_heads=4)
    randomize_lora_up(attn, 0.2)
    x = torch.randn(2, 5, 64)
    assert torch.equal(attn(x), attn(x, torch.zeros(2, 3)))
    assert torch.equal(attn(x[:, 0]), attn(x[:, 0], torch.zeros(2, 3)))


def test_stacked_qkv_equals_the_three_lora_layers():
    torch.manual_seed(0)
    attn = PoseConditionedLoRAAttention(64, num_heads=4, rank=3, alpha=2.0)
    randomize_lora_up(attn, 0.2)
    x, emb = torch.randn(2, 7, 64), attn.pose_embedding(torch.randn(2, 3) * 20)
    expected = torch.stack([attn.q(x, emb), attn.k(x, emb), attn.v(x, emb)])
    torch.testing.assert_close(attn.qkv(x, emb), expected)
    attn.k.alpha = 5.0  # different scales: computed layer by layer
    torch.testing.assert_close(attn.qkv(x, emb), torch.stack([attn.q(x, emb), attn.k(x, emb), attn.v(x, emb)]))


def test_qkv_bases_are_frozen_and_lora_is_trainable():
    attn = PoseConditionedLoRAAttention(64, num_heads=4)
    for proj in (attn.q, attn.k, attn.v):
        assert not proj.base.weight.requires_grad and not proj.base.bias.requires_grad
        assert proj.down.weight.requires_grad and proj.up.weight.requires_grad
    attn(torch.randn(2, 64), torch.randn(2, 3)).sum().backward()
    assert attn.q.base.weight.grad is None and attn.q.up.weight.grad is not None


def test_shared_pose_embedding_mode_and_input_errors():
    attn = PoseConditionedLoRAAttention(64, num_heads=4, pose_emb_dim=16, num_tokens=None, embed_pose=False)
    assert attn.pose_embedding is None and attn.tokenizer is None
    assert attn(torch.randn(2, 3, 64), torch.randn(2, 16)).shape == (2, 3, 64)
    with pytest.raises(ValueError, match="pose embedding"):
        attn(torch.randn(2, 3, 64), torch.randn(2, 3))
    with pytest.raises(ValueError, match="2-D input needs num_tokens"):
        attn(torch.randn(2, 64), torch.randn(2, 16))
    with pytest.raises(ValueError, match="divisible"):
        PoseConditionedLoRAAttention(60, num_heads=8)
    with pytest.raises(ValueError, match=r"\[B, D\] or \[B, T, D\]"):
        PoseConditionedLoRAAttention(64, num_heads=4)(torch.randn(64))


def test_pose_embedding_and_tokenizer():
    emb = PoseEmbedding(3, 32)
    assert emb(torch.randn(5, 3)).shape == (5, 32)
    with pytest.raises(ValueError, match=r"expected pose \[B, 3\]"):
        emb(torch.randn(5, 2))
    tok = EmbeddingTokenizer(128, num_tokens=16, token_dim=64)
    x = torch.randn(2, 128)
    tokens = tok.tokenize(x)
    assert tokens.shape == (2, 16, 64) and tok.detokenize(tokens).shape == (2, 128)
    # token i only sees chunk i of the embedding
    x2 = x.clone()
    x2[:, :8] += 1
    changed = (tok.tokenize(x2) - tokens).abs().sum(-1) > 0
    assert changed[:, 0].all() and not changed[:, 1:].any()
    with pytest.raises(ValueError, match="divisible by num_tokens"):
        EmbeddingTokenizer(100, num_tokens=16)
