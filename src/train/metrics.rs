//! DCASE's scores: accuracy and multi-class log-loss (mean −ln p of the true class, p
//! clipped to [1e-15, 1]), overall (over clips) and per class with their macro average
//! (DCASE's ranking figure), and the confusion matrix (rows: true, columns: predicted).

use serde::Serialize;

use crate::support::argmax;

pub const LOG_LOSS_EPS: f64 = 1e-15;

#[derive(Debug, Clone, Serialize)]
pub struct ClassScore {
    pub class: String,
    pub clips: u64,
    pub accuracy: f64,
    pub log_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub clips: u64,
    /// Correct / all clips.
    pub accuracy: f64,
    pub log_loss: f64,
    /// Mean of the per-class figures over classes with clips.
    pub macro_accuracy: f64,
    pub macro_log_loss: f64,
    pub per_class: Vec<ClassScore>,
    pub classes: Vec<String>,
    pub confusion: Vec<Vec<u64>>,
}

/// Score `probabilities` (one row per clip) against the `truth` class indices.
pub fn score(probabilities: &[Vec<f32>], truth: &[usize], classes: &[String]) -> Scores {
    let k = classes.len();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut losses = vec![0.0f64; k];
    let mut counts = vec![0u64; k];
    let (mut correct, mut loss) = (0u64, 0.0f64);
    for (p, &t) in probabilities.iter().zip(truth) {
        let predicted = argmax(p);
        confusion[t][predicted] += 1;
        let l = -(p[t] as f64).clamp(LOG_LOSS_EPS, 1.0).ln();
        losses[t] += l;
        counts[t] += 1;
        loss += l;
        correct += (predicted == t) as u64;
    }
    let n = probabilities.len().min(truth.len()) as u64;
    let per_class: Vec<ClassScore> = (0..k)
        .map(|c| ClassScore {
            class: classes[c].clone(),
            clips: counts[c],
            accuracy: ratio(confusion[c][c] as f64, counts[c]),
            log_loss: ratio(losses[c], counts[c]),
        })
        .collect();
    let present: Vec<&ClassScore> = per_class.iter().filter(|c| c.clips > 0).collect();
    let mean =
        |f: fn(&ClassScore) -> f64| ratio(present.iter().map(|c| f(c)).sum(), present.len() as u64);
    Scores {
        clips: n,
        accuracy: ratio(correct as f64, n),
        log_loss: ratio(loss, n),
        macro_accuracy: mean(|c| c.accuracy),
        macro_log_loss: mean(|c| c.log_loss),
        per_class,
        classes: classes.to_vec(),
        confusion,
    }
}

fn ratio(total: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { total / n as f64 }
}

impl Scores {
    /// A plain-text table for the terminal.
    pub fn table(&self) -> String {
        let width = self
            .classes
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .max(7);
        let mut out = format!(
            "{:width$}  {:>5}  {:>8}  {:>8}\n",
            "class", "clips", "accuracy", "log-loss"
        );
        for c in &self.per_class {
            out.push_str(&format!(
                "{:width$}  {:>5}  {:>7.1}%  {:>8.3}\n",
                c.class,
                c.clips,
                c.accuracy * 100.0,
                c.log_loss
            ));
        }
        out.push_str(&format!(
            "{:width$}  {:>5}  {:>7.1}%  {:>8.3}\n{:width$}  {:>5}  {:>7.1}%  {:>8.3}\n",
            "overall",
            self.clips,
            self.accuracy * 100.0,
            self.log_loss,
            "macro",
            "",
            self.macro_accuracy * 100.0,
            self.macro_log_loss
        ));
        out
    }
}
