"""all-MiniLM-L6-v2 sentence vectors computed in float32 NumPy straight from the
safetensors weights: the reference the node's int8 ONNX embeddings are checked against.

BERT as in Hugging Face `BertModel` (post-LayerNorm, exact GELU), then mean pooling over the
attention mask and L2 normalisation, as sentence-transformers does for this model.
"""
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def _layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _gelu(x):
    from math import erf, sqrt
    verf = np.vectorize(erf, otypes=[np.float64])
    return (0.5 * x * (1.0 + verf(x / sqrt(2.0)))).astype(np.float32)


class MiniLM:
    def __init__(self, weights_dir: Path, tokenizer_path: Path):
        self.w = load_file(str(weights_dir / "model.safetensors"))
        self.cfg = json.loads((weights_dir / "config.json").read_text())
        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.tok.no_padding()
        self.tok.no_truncation()

    def _linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed_one(self, text: str) -> np.ndarray:
        ids = np.array(self.tok.encode(text).ids, dtype=np.int64)
        cfg, w = self.cfg, self.w
        eps = cfg["layer_norm_eps"]
        heads = cfg["num_attention_heads"]
        n = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        hd = cfg["hidden_size"] // heads
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q = self._linear(x, p + "attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
            k = self._linear(x, p + "attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
            v = self._linear(x, p + "attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, heads * hd)
            x = _layer_norm(self._linear(ctx, p + "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
            h = _gelu(self._linear(x, p + "intermediate.dense"))
            x = _layer_norm(self._linear(h, p + "output.dense") + x,
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        v = x.mean(0)
        return v / np.linalg.norm(v)
