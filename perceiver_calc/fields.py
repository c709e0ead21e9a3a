"""What each config field means and which rule it must satisfy (the text of the config reference).

Which modules a field feeds is *not* written here: docs/gen_config_reference.py computes it
by changing the field and resolving, so the reference cannot drift from the code.
"""

from __future__ import annotations

__all__ = ["FIELD_DOCS"]

FIELD_DOCS: dict[str, tuple[str, str]] = {
    # field: (meaning, constraint)
    "num_latents": ("N: rows of the latent array; query length of the encoder.", "int >= 1"),
    "d_latents": (
        "D: width of the latents; q_dim of the encoder, kv_dim of every decoder.",
        "int >= 1; divisible by num_self_attention_heads and num_cross_attention_heads",
    ),
    "d_model": (
        "C: text embedding width (kv_dim of the text encoder), the bare model's input width, "
        "and the masked-LM decoder's query width. Ignored by the image, flow and multimodal "
        "classes, whose input width comes from their preprocessor.",
        "int >= 1; MaskedLM: divisible by decoder_num_heads (8)",
    ),
    "num_blocks": (
        "Times the block of self-attention layers is applied; its weights are shared, so "
        "it adds compute, not parameters.",
        "int >= 0 (0: no self-attention at all)",
    ),
    "num_self_attends_per_block": ("L: self-attention layers in the block.", "int >= 0"),
    "num_self_attention_heads": (
        "Heads of every encoder self-attention.",
        "int >= 1; divides d_latents and the self-attention qk/v channels",
    ),
    "num_cross_attention_heads": (
        "Heads of the encoder cross-attention (decoders have their own).",
        "int >= 1; divides d_latents and the cross-attention qk/v channels (by default the "
        "preprocessor width: 261 Fourier, 322 conv/flow, 512 learned)",
    ),
    "qk_channels": (
        "Query/key width of every encoder attention. Unset: self-attention uses d_latents; "
        "cross-attention uses kv_dim ('kv') or d_latents ('q').",
        "int >= 1 or null; divisible by both head counts",
    ),
    "v_channels": (
        "Value width of every encoder attention. Unset: = that layer's qk channels.",
        "int >= 1 or null; divisible by both head counts; the self-attention value width "
        "must equal d_latents (the query residual adds them)",
    ),
    "cross_attention_shape_for_attention": (
        "Which side sets a cross-attention's qk channels when they are unset.",
        "'q' or 'kv' (checked only where a cross-attention has no qk_channels)",
    ),
    "self_attention_widening_factor": (
        "MLP hidden width of self-attention: factor x D.",
        "int >= 1",
    ),
    "cross_attention_widening_factor": ("MLP hidden width of encoder cross-attention.", "int >= 1"),
    "hidden_act": ("MLP activation.", "a key of transformers' ACT2FN"),
    "attention_probs_dropout_prob": (
        "Dropout on attention probabilities; the only dropout in the model.",
        "a number (float, or the int 0 or 1; no string or bool), 0 <= p <= 1",
    ),
    "initializer_range": (
        "Std of weight initialisation.",
        "finite float >= 0 (an int, string or bool is refused, as transformers' strict config)",
    ),
    "layer_norm_eps": (
        "Not used by transformers' Perceiver: every LayerNorm uses torch's 1e-5.",
        "finite float (an int, string or bool is refused, as transformers' strict config)",
    ),
    "use_query_residual": ("Query residual of the encoder cross-attention only.", "bool"),
    "vocab_size": ("Token vocabulary (text classes) and masked-LM output width.", "int >= 1"),
    "max_position_embeddings": (
        "P: text positions; the masked-LM decoder always emits P outputs.",
        "int >= 1; text inputs at most this long",
    ),
    "image_size": (
        "Learned: side S of the S x S trainable position grid (inputs must have S² pixels); "
        "multimodal: Fourier resolution of frames.",
        "int >= 1 for Learned and Multimodal",
    ),
    "train_size": ("Optical flow: [H, W] of the Fourier grid and the output.", "two ints >= 1"),
    "num_frames": ("Multimodal: video frames (and audio length factor).", "int >= 1"),
    "audio_samples_per_frame": ("Multimodal: audio samples per video frame.", "int >= 1"),
    "samples_per_patch": ("Multimodal: audio samples per patch.", "int >= 1"),
    "output_shape": ("Multimodal: (batch, frames, H, W) of the video decoder.", "four ints >= 1"),
    "output_num_channels": ("Multimodal: width of the shared decoder's output.", "int >= 1"),
    "label_trainable_num_channels": (
        "Multimodal: width of the trainable label query (config key "
        "_label_trainable_num_channels).",
        "int >= 1",
    ),
    "num_labels": (
        "Classes of classification heads; as given (id2label is then rebuilt), else "
        "len(id2label) with keys counted after int conversion, else 2 (as transformers).",
        "int >= 1",
    ),
    "chunk_size_feed_forward": (
        "MLP chunking along the sequence (memory only).",
        "int >= 0; 0 or a divisor of num_latents and of every decoder's query count",
    ),
    "decoder_num_heads": (
        "Heads of the decoder cross-attention. transformers hardcodes 8 (MaskedLM) or 1.",
        "int >= 1 or null; divides the decoder's qk/v channels",
    ),
    "decoder_qk_channels": (
        "Decoder query/key width. MaskedLM hardcodes 256; others derive it.",
        "int >= 1 or null",
    ),
    "decoder_v_channels": ("Decoder value width. MaskedLM: d_model.", "int >= 1 or null"),
    "decoder_widening_factor": ("Decoder MLP widening (transformers: 1).", "int >= 1 or null"),
    "decoder_use_query_residual": (
        "Decoder query residual (MaskedLM False, classifiers True, flow False).",
        "bool or null",
    ),
    "decoder_final_project": (
        "MaskedLM: add final_layer Linear(d_model, d_latents) (transformers: no).",
        "bool or null; true needs d_latents == d_model",
    ),
    "preprocessor_out_channels": (
        "Image preprocessor width: Learned conv1x1 256, conv stem 64, flow patches 64.",
        "int >= 1 or null",
    ),
    "preprocessor_project_pos_dim": (
        "Learned: width of the projected positions (256).",
        "int >= 1 or null",
    ),
    "preprocessor_position_num_channels": (
        "Learned: width of the trainable positions (256).",
        "int >= 1 or null; must equal preprocessor_out_channels",
    ),
    "fourier_num_bands": (
        "Fourier bands of image/flow position features (64).",
        "int >= 1 or null",
    ),
    "fourier_max_resolution": (
        "Fourier max resolution (values only, no dimension).",
        "ints >= 1 or null",
    ),
}
