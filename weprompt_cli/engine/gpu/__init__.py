"""The engine's GPU decode path: a CUDA-graph token loop with sampling on the device.

- `forward.StaticForward`: a one-token RWKV-7 forward on static buffers (token id, state,
  logits), in plain torch, reading the loaded model's `model.z`.
- `graph`: the path choice (`decode_path`), the capture/replay wrapper (`GraphDecoder`),
  `install(engine)`, the per-token step used by `Engine.generate`, and the prefill route.
- `sampler.DeviceSampler`: temperature, top-p, top-k, penalties and a seeded draw on the
  logits' device.

RWKV-4/5/6 run the plain path: their package forward has several code paths per layer
(i8 matrices, layer splits across devices, streamed layers) that a static single-device
forward would not reproduce cleanly.
"""
