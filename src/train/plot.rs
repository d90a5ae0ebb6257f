//! PNG plots of a training run: learning curves (loss and accuracy per epoch, training
//! and validation) and the confusion matrix, drawn with plotters.

use std::path::Path;

use plotters::prelude::*;

use super::checkpoint::EpochLog;
use super::metrics::Scores;

fn failed(path: &Path, e: impl std::fmt::Display) -> String {
    format!(
        "{}: cannot draw: {e} (plots need a font: apt-get install fonts-dejavu-core)",
        path.display()
    )
}

/// Loss (left) and accuracy (right) per epoch.
pub fn learning_curves(history: &[EpochLog], path: &Path) -> Result<(), String> {
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(path, e))?;
    let (left, right) = root.split_horizontally(600);
    let epochs = history.len().max(2) as f64;
    let max_loss = history
        .iter()
        .flat_map(|h| [h.train_loss, h.val_loss])
        .filter(|v| v.is_finite())
        .fold(0.1f64, f64::max)
        * 1.1;
    type Pick = fn(&EpochLog) -> f64;
    let panels: [(_, &str, f64, Pick, Pick); 2] = [
        (left, "loss", max_loss, |h| h.train_loss, |h| h.val_loss),
        (
            right,
            "accuracy",
            1.0,
            |h| h.train_accuracy,
            |h| h.val_accuracy,
        ),
    ];
    for (area, name, top, train, val) in panels {
        let mut chart = ChartBuilder::on(&area)
            .caption(name, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(1f64..epochs, 0f64..top)
            .map_err(|e| failed(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .draw()
            .map_err(|e| failed(path, e))?;
        for (label, pick, colour) in [("training", train, BLUE), ("validation", val, RED)] {
            chart
                .draw_series(LineSeries::new(
                    history.iter().map(|h| (h.epoch as f64, pick(h))),
                    colour.stroke_width(2),
                ))
                .map_err(|e| failed(path, e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| failed(path, e))?;
    }
    root.present().map_err(|e| failed(path, e))
}

/// The confusion matrix: rows true classes, columns predictions, shaded by row share.
pub fn confusion(scores: &Scores, path: &Path) -> Result<(), String> {
    let k = scores.classes.len().max(1);
    let cell = (560 / k).clamp(24, 80) as i32;
    let margin = 200;
    let side = margin + cell * k as i32 + 40;
    let root = BitMapBackend::new(path, (side as u32, side as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(path, e))?;
    let title = format!(
        "confusion: accuracy {:.1} %, log-loss {:.3}",
        scores.accuracy * 100.0,
        scores.log_loss
    );
    root.draw(&Text::new(title, (10, 10), ("sans-serif", 20)))
        .map_err(|e| failed(path, e))?;
    let font = ("sans-serif", (cell / 3).clamp(10, 16));
    for (t, row) in scores.confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        let y = margin + cell * t as i32;
        root.draw(&Text::new(
            scores.classes[t].clone(),
            (10, y + cell / 3),
            font,
        ))
        .map_err(|e| failed(path, e))?;
        for (p, &n) in row.iter().enumerate() {
            let x = margin + cell * p as i32;
            let share = if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            };
            let shade = (255.0 * (1.0 - share)) as u8;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                RGBColor(shade, shade, 255).filled(),
            ))
            .map_err(|e| failed(path, e))?;
            root.draw(&Text::new(
                n.to_string(),
                (x + cell / 3, y + cell / 3),
                font,
            ))
            .map_err(|e| failed(path, e))?;
        }
    }
    // Predicted classes: their index above each column (names are on the rows).
    for p in 0..k {
        let x = margin + cell * p as i32 + cell / 3;
        root.draw(&Text::new(p.to_string(), (x, margin - 24), font))
            .map_err(|e| failed(path, e))?;
    }
    root.draw(&Text::new("predicted →", (margin, margin - 48), font))
        .map_err(|e| failed(path, e))?;
    root.present().map_err(|e| failed(path, e))
}
