"""The pose-transformer models (torch only; nothing else of the package but `viewdiff.paths`).

Every model maps a face embedding `src [B, D]` at `source_pose [B, 3]` to the embedding at
`target_pose [B, 3]` (degrees, yaw/pitch/roll; `angles` / `pose` are accepted as the older names):
`lora` (LoRA layers and injection), `pose_attention` (pose embedding, tokenizer, pose-conditioned LoRA
attention), `adaptive_norm` (adaLN), `projection` (keypoints -> voxels -> rotate -> render),
`cross_view` (attention across the views of one identity), `config` (`TransformerConfig`),
`transformer` (`EnhancedTransformerDecoderOnly3D`), `baselines` (DREAM), `checkpoint` (safetensors +
config.json, LoRA adapter files).
"""
