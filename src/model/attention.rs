//! The self-attention encoder layer of the authors' `sub_attention.py`: multi-head
//! attention **without** the 1/√d_k scaling, post-norm residual, then a position-wise
//! feed-forward of two 1×1 convolutions, post-norm residual. No positional encoding.
//! Parameter names follow theirs: `layers.0.enc_self_attn.W_Q`, `…pos_ffn.conv1`.

use tch::{Tensor, nn};

use super::init;

#[derive(Debug)]
pub struct EncoderLayer {
    w_q: nn::Linear,
    w_k: nn::Linear,
    w_v: nn::Linear,
    output: nn::Linear,
    attn_norm: nn::LayerNorm,
    conv1: nn::Conv1D,
    conv2: nn::Conv1D,
    ffn_norm: nn::LayerNorm,
    heads: i64,
    d_k: i64,
}

impl EncoderLayer {
    /// `p` is the encoder's path (`audio_net.encoder1`, `encoder`); the one layer lives
    /// at `layers.0`, as in the authors' `Encoder(1)`.
    pub fn new(p: &nn::Path, d_model: i64, d_ff: i64, heads: i64) -> EncoderLayer {
        let layer = p / "layers" / 0;
        let attn = &layer / "enc_self_attn";
        let ffn = &layer / "pos_ffn";
        let d_k = d_model / heads;
        let ln = nn::LayerNormConfig {
            eps: 1e-5,
            ..Default::default()
        };
        let pointwise = |fan_in: i64| nn::ConvConfig {
            ws_init: init::WEIGHT,
            bs_init: init::bias(fan_in),
            ..Default::default()
        };
        EncoderLayer {
            w_q: init::linear(&attn / "W_Q", d_model, d_k * heads),
            w_k: init::linear(&attn / "W_K", d_model, d_k * heads),
            w_v: init::linear(&attn / "W_V", d_model, d_k * heads),
            output: init::linear(&attn / "output", d_k * heads, d_model),
            attn_norm: nn::layer_norm(&attn / "layerNorm", vec![d_model], ln),
            conv1: nn::conv1d(&ffn / "conv1", d_model, d_ff, 1, pointwise(d_model)),
            conv2: nn::conv1d(&ffn / "conv2", d_ff, d_model, 1, pointwise(d_ff)),
            ffn_norm: nn::layer_norm(&ffn / "layerNorm", vec![d_model], ln),
            heads,
            d_k,
        }
    }

    /// (B, S, d_model) → (B, S, d_model).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let b = xs.size()[0];
        let split = |t: Tensor| t.view([b, -1, self.heads, self.d_k]).transpose(1, 2);
        let q = split(xs.apply(&self.w_q));
        let k = split(xs.apply(&self.w_k));
        let v = split(xs.apply(&self.w_v));
        let attn = q.matmul(&k.transpose(-1, -2)).softmax(-1, q.kind());
        let context =
            attn.matmul(&v)
                .transpose(1, 2)
                .contiguous()
                .view([b, -1, self.heads * self.d_k]);
        let attended = (context.apply(&self.output) + xs).apply(&self.attn_norm);
        let ffn = attended
            .transpose(1, 2)
            .apply(&self.conv1)
            .relu()
            .apply(&self.conv2)
            .transpose(1, 2);
        (ffn + attended).apply(&self.ffn_norm)
    }
}
