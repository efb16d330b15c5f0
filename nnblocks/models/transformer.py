"""The Transformer family, assembled only from slots (importing this registers them).

Models (kind ``model``):

- ``transformer_lm``: decoder-only language model, ``forward(tokens [B, T]) -> [B, T, V]``.
- ``transformer_seq2seq``: encoder-decoder, ``forward(src [B, S], tgt_in [B, T]) ->
  [B, T, V]``.
- ``transformer_classifier``: encoder-only, ``forward(tokens [B, T]) -> [B, C]``, or
  ``[B, T, C]`` per token with ``pool="none"``.

Slots, named as module paths (``model.get_submodule(path)``):

============================  ===========  ==============================================
slot                          kind         models
============================  ===========  ==============================================
``embedding``                 embedding    lm, classifier
``src_embedding``,            embedding    seq2seq (one module with ``share_embeddings``)
``tgt_embedding``
``position``                  position     lm, classifier (absolute schemes only)
``src_position``,             position     seq2seq (absolute schemes only)
``tgt_position``
``dropout``                   regularizat. all (embedding dropout; absent when 0)
``encoder.layers.N``          block        seq2seq, classifier
``decoder.layers.N``          block        lm, seq2seq
``<stack>.layers.N.self_attention``,     inside each block (see ``nnblocks.parts.block``)
``.cross_attention`` (decoder of seq2seq), ``.feedforward``, ``.self_attention_norm``,
``.cross_attention_norm``, ``.feedforward_norm``
``encoder.final_norm``,       norm         after the last layer (pre-norm stacks)
``decoder.final_norm``
``head``                      head         all (``[.., V]`` logits or ``[.., C]`` scores)
============================  ===========  ==============================================

Every option of the spec fills slots for all layers (``self_attention``, ``feedforward``,
``norm``, ``norm_placement``, ``dropout``, ``drop_path``, ``block``; ``cross_attention`` in
a seq2seq decoder). A relative position spec (``rotary``, ``alibi``) is handed to every
block's ``position=`` option, which hands it to the attention parts; an absolute one is
added to the embeddings.

Per-layer overrides: ``layer_overrides`` maps a layer selector to the options that change
for those layers::

    layer_overrides:
      "0-3": {self_attention: {name: local, window: 64}}   # layers 0, 1, 2, 3 (inclusive)
      "5": {feedforward: swiglu}
      "6,8,10-11": {norm_placement: post}
      "*": {dropout: 0.0}                                   # every layer

Keys are strings (quote plain numbers in YAML, which reads ``0:`` as an integer, while a
saved spec is JSON). Entries apply in the order written; when two set the same option for a layer the later one
wins. A seq2seq model has two stacks, so its keys name one: ``"encoder.0-1"``,
``"decoder.*"``; the single-stack models take the prefix too (``"decoder.0-3"`` for an
lm). A key that selects no existing layer, or an option a layer does not have, fails at
build time naming ``layer_overrides.<key>``.

Weight tying is declared in the spec (``tie_embeddings``: embedding and head;
``share_embeddings``: source and target embeddings of a seq2seq model) and listed on the
model as ``model.tied_parameters``: one tuple of parameter names per shared Parameter, the
sharing the reuse audit accepts as intended.

The decoders implement the decoding protocol of ``docs/interfaces.md`` (``bos_id``,
``eos_id``, ``pad_id``, ``begin(src=None)``, ``step(prefix, state, use_cache=True)``), so
``nnblocks.generate`` decodes them with each attention part's cache.
"""

from nnblocks.models import (  # noqa: F401  (imported for registration)
    transformer_classifier,
    transformer_lm,
    transformer_seq2seq,
)
