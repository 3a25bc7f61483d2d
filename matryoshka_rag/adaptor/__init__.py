"""The adaptor as data and as code.

- `format`: ``config.json``, reading and checking an adaptor folder (torch-free).
- `numpy_forward`: the serving forward in numpy (torch-free).
- `torch_module`: the trainable ``nn.Module``.
- `folder_write`, `persistence`: writing and loading an adaptor folder; `hub`: folders named by Hub repo id.
- `pca`: the principal axes the adaptor starts from.

Nothing is imported here, so that the torch-free modules stay torch-free.
"""
