//! Eval outputs: the ROC plots (SVG), the JUnit XML a CI system reads, and the checks behind it.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
use quick_xml::escape::escape;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One threshold a CI run gates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub message: String,
}

/// A named ROC curve to draw.
pub struct Curve<'a> {
    pub label: String,
    pub points: &'a [(f64, f64)],
}

const COLOURS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// Writes the ROC curves on linear axes and on log-log axes (where low-FPR behaviour shows).
pub fn roc_plots(curves: &[Curve<'_>], title: &str, linear: &Path, loglog: &Path) -> Result<()> {
    {
        let root = SVGBackend::new(linear, (640, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart.configure_mesh().x_desc("false positive rate").y_desc("true positive rate").draw()?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))?
            .label("chance")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.3)));
        for (c, colour) in curves.iter().zip(COLOURS.iter().cycle()) {
            chart
                .draw_series(LineSeries::new(c.points.iter().copied(), colour.stroke_width(2)))?
                .label(c.label.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    {
        let floor = 1e-3;
        let root = SVGBackend::new(loglog, (640, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title} (log-log)"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((floor..1f64).log_scale(), (floor..1f64).log_scale())?;
        chart.configure_mesh().x_desc("false positive rate").y_desc("true positive rate").draw()?;
        let diag: Vec<(f64, f64)> =
            (0..=30).map(|i| 10f64.powf(-3.0 + 3.0 * i as f64 / 30.0)).map(|v| (v, v)).collect();
        chart
            .draw_series(LineSeries::new(diag, BLACK.mix(0.3)))?
            .label("chance")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.3)));
        for (c, colour) in curves.iter().zip(COLOURS.iter().cycle()) {
            let pts = c.points.iter().map(|&(f, t)| (f.max(floor), t.max(floor)));
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))?
                .label(c.label.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(())
}

/// A JUnit XML report: one test case per check, failed checks as failures.
pub fn junit(suite: &str, checks: &[Check], seconds: f64, summary: &str) -> String {
    let failures = checks.iter().filter(|c| !c.passed).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"mint-compliance\" tests=\"{}\" failures=\"{failures}\" time=\"{seconds:.3}\">\n",
        checks.len()
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{seconds:.3}\">\n",
        escape(suite),
        checks.len()
    ));
    xml.push_str(&format!("    <system-out>{}</system-out>\n", escape(summary)));
    for c in checks {
        xml.push_str(&format!("    <testcase classname=\"mint.eval\" name=\"{}\"", escape(&c.name)));
        if c.passed {
            xml.push_str(&format!("><system-out>{}</system-out></testcase>\n", escape(&c.message)));
        } else {
            xml.push_str(&format!(
                "><failure message=\"{}\" type=\"threshold\">{}</failure></testcase>\n",
                escape(&c.message),
                escape(&c.message)
            ));
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_counts_failures_and_escapes() {
        let checks = vec![
            Check { name: "auc >= 0.6".into(), passed: true, message: "0.71 <ok>".into() },
            Check { name: "tpr@1% >= 0.1".into(), passed: false, message: "0.02 & below".into() },
        ];
        let xml = junit("fmnist", &checks, 1.5, "summary");
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains("&lt;ok&gt;") && xml.contains("0.02 &amp; below"));
        assert!(xml.contains("name=\"auc &gt;= 0.6\""));
        assert_eq!(xml.matches("<failure").count(), 1);
    }
}
