//! Adam as `torch.optim.Adam` computes it (bias corrections, no weight decay: the authors'
//! recipe), or `torch.optim.AdamW` when a weight decay is asked for — decoupled, the
//! weights shrink by lr × decay each step, so the decay does not pass through Adam's
//! per-weight scaling as an L2 term in the gradient would. Written out so its state —
//! step and both moments — is saved with each checkpoint and a resumed run continues
//! exactly where it stopped.

use std::path::Path;

use tch::{Kind, Tensor};

pub struct Adam {
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// Updates made so far.
    pub step: i64,
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> Adam {
        let zeros = |p: &Tensor| p.zeros_like().detach();
        Adam {
            lr,
            weight_decay,
            betas: (0.9, 0.999),
            eps: 1e-8,
            step: 0,
            m: params.iter().map(|(_, p)| zeros(p)).collect(),
            v: params.iter().map(|(_, p)| zeros(p)).collect(),
            params,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    pub fn step(&mut self) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                if self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                }
                let m = &self.m[i] * b1 + &g * (1.0 - b1);
                let v = &self.v[i] * b2 + &g * &g * (1.0 - b2);
                let update = (&m / c1) / ((&v / c2).sqrt() + self.eps) * self.lr;
                let _ = p.g_sub_(&update);
                self.m[i].copy_(&m);
                self.v[i].copy_(&v);
            }
        });
    }

    /// Save the state (moments by parameter name, and the step).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let step = Tensor::from_slice(&[self.step]);
        let mut named: Vec<(String, &Tensor)> = vec![("step".to_string(), &step)];
        for (i, (name, _)) in self.params.iter().enumerate() {
            named.push((format!("m.{name}"), &self.m[i]));
            named.push((format!("v.{name}"), &self.v[i]));
        }
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        Tensor::write_safetensors(&refs, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Restore a saved state; every parameter's moments must be there with its shape.
    pub fn load(&mut self, path: &Path) -> Result<(), String> {
        let tensors =
            Tensor::read_safetensors(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let find = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let step = find("step").ok_or_else(|| format!("{}: no step", path.display()))?;
        self.step = step.int64_value(&[0]);
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (moment, store) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let saved = find(&format!("{moment}.{name}"))
                    .filter(|t| t.size() == p.size())
                    .ok_or_else(|| {
                        format!(
                            "{}: no {moment}.{name} of shape {:?}",
                            path.display(),
                            p.size()
                        )
                    })?;
                tch::no_grad(|| store.copy_(&saved.to_kind(Kind::Float)));
            }
        }
        Ok(())
    }
}
