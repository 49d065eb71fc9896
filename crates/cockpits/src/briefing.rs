//! The daily briefing (城市日报): one page per cockpit for one local day — its briefing KPIs
//! against the same day a week before, a line chart of its briefing series, a bar chart and
//! table of its briefing ranking, and which panels the reader could not see. Written here
//! as SVG (no I/O, no fonts); the server turns it into PNG and PDF.

use crate::{Format, Level, Text};

/// The page, 1240 × 1754 px: A4 at 150 dpi.
pub const WIDTH: u32 = 1240;
pub const HEIGHT: u32 = 1754;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn parse(text: &str) -> Option<Lang> {
        match text {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    pub fn pick(self, text: &Text) -> &str {
        match self {
            Lang::En => &text.en,
            Lang::Zh => &text.zh,
        }
    }

    fn say(self, en: &'static str, zh: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

/// A KPI on the day and a week before.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KpiLine {
    pub panel: String,
    pub title: String,
    pub unit: String,
    #[serde(skip)]
    pub format: Format,
    pub value: Option<f64>,
    pub week_before: Option<f64>,
    #[serde(skip)]
    pub level: Option<Level>,
}

/// Lines over the day: x in hours after the day's start.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeriesChart {
    pub title: String,
    #[serde(skip)]
    pub format: Format,
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
}

/// A ranking: its first rows as a table, and their `value` as bars.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RankingTable {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// The first column's text and the `value` column, for the bar chart.
    pub bars: Vec<(String, f64)>,
    #[serde(skip)]
    pub format: Format,
}

/// Everything on the page, already read and written as text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Briefing {
    pub city: String,
    pub cockpit: String,
    /// The local day, `YYYY-MM-DD`.
    pub day: String,
    #[serde(skip)]
    pub lang: Lang,
    pub kpis: Vec<KpiLine>,
    pub series: Option<SeriesChart>,
    pub ranking: Option<RankingTable>,
    /// Panels the reader may not read (title, why).
    pub hidden: Vec<(String, String)>,
}

const FONT: &str = "WenQuanYi Micro Hei, Noto Sans CJK SC, Noto Sans SC, DejaVu Sans, sans-serif";
const INK: &str = "#0f172a";
const MUTED: &str = "#64748b";
const LINE: &str = "#cbd5e1";
const PALETTE: [&str; 6] = [
    "#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0891b2",
];

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn level_colour(level: Option<Level>) -> &'static str {
    match level {
        Some(Level::Ok) => "#15803d",
        Some(Level::Warn) => "#b45309",
        Some(Level::Alarm) => "#b91c1c",
        None => INK,
    }
}

/// The change from a week before, as text (`+12%`, `−3%`, `—` when there is nothing to
/// compare).
pub fn change(value: Option<f64>, before: Option<f64>) -> String {
    match (value, before) {
        (Some(v), Some(b)) if b != 0.0 => {
            let pct = (v - b) / b.abs() * 100.0;
            if pct >= 0.0 {
                format!("+{pct:.0}%")
            } else {
                format!("−{:.0}%", -pct)
            }
        }
        _ => "—".to_string(),
    }
}

struct Svg(String);

impl Svg {
    // One SVG <text>: each argument is one of its attributes, in the order SVG writes them.
    #[allow(clippy::too_many_arguments)]
    fn text(
        &mut self,
        x: f64,
        y: f64,
        size: u32,
        colour: &str,
        anchor: &str,
        weight: &str,
        text: &str,
    ) {
        self.0.push_str(&format!(
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" fill="{colour}" text-anchor="{anchor}" font-weight="{weight}">{}</text>"#,
            esc(text)
        ));
        self.0.push('\n');
    }
    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, colour: &str, width: f64) {
        self.0.push_str(&format!(
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{colour}" stroke-width="{width}"/>"#
        ));
        self.0.push('\n');
    }
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, colour: &str) {
        self.0.push_str(&format!(
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{colour}"/>"#
        ));
        self.0.push('\n');
    }
}

/// Text cut to `max` characters (a long name must not run over the next column).
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

impl Briefing {
    /// The page as SVG.
    pub fn svg(&self) -> String {
        let l = self.lang;
        let mut s = Svg(format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT}">
<rect width="100%" height="100%" fill="#ffffff"/>
"##
        ));
        let left = 80.0;
        let right = f64::from(WIDTH) - 80.0;
        s.text(
            left,
            110.0,
            22,
            MUTED,
            "start",
            "normal",
            &format!("{} · {}", self.city, l.say("Daily briefing", "城市日报")),
        );
        s.text(left, 160.0, 40, INK, "start", "bold", &self.cockpit);
        s.text(right, 160.0, 28, INK, "end", "normal", &self.day);
        s.line(left, 185.0, right, 185.0, INK, 2.0);

        // KPIs: the day against the same day a week before.
        let mut y = 240.0;
        s.text(
            left,
            y,
            24,
            INK,
            "start",
            "bold",
            l.say("Key figures", "关键指标"),
        );
        y += 36.0;
        s.text(
            760.0,
            y,
            16,
            MUTED,
            "end",
            "normal",
            l.say("the day", "当日"),
        );
        s.text(
            960.0,
            y,
            16,
            MUTED,
            "end",
            "normal",
            l.say("a week before", "上周同日"),
        );
        s.text(
            right,
            y,
            16,
            MUTED,
            "end",
            "normal",
            l.say("change", "变化"),
        );
        for kpi in &self.kpis {
            y += 46.0;
            s.text(left, y, 22, INK, "start", "normal", &cut(&kpi.title, 34));
            let value = kpi.value.map_or("—".to_string(), |v| kpi.format.write(v));
            s.text(
                760.0,
                y,
                26,
                level_colour(kpi.level),
                "end",
                "bold",
                format!("{value} {}", kpi.unit).trim_end(),
            );
            let before = kpi
                .week_before
                .map_or("—".to_string(), |v| kpi.format.write(v));
            s.text(960.0, y, 20, MUTED, "end", "normal", &before);
            s.text(
                right,
                y,
                22,
                INK,
                "end",
                "normal",
                &change(kpi.value, kpi.week_before),
            );
            s.line(left, y + 14.0, right, y + 14.0, LINE, 1.0);
        }
        if self.kpis.is_empty() {
            y += 46.0;
            s.text(
                left,
                y,
                20,
                MUTED,
                "start",
                "normal",
                l.say(
                    "This cockpit marks no KPI for the briefing (briefing = true).",
                    "该驾驶舱未指定简报指标（briefing = true）。",
                ),
            );
        }

        // Chart 1: the series over the day.
        y += 70.0;
        if let Some(series) = &self.series {
            s.text(left, y, 24, INK, "start", "bold", &series.title);
            let (top, height) = (y + 30.0, 330.0);
            self.line_chart(&mut s, series, left, top, right - left, height);
            y = top + height + 40.0;
        }

        // Chart 2 and a table: the ranking.
        if let Some(ranking) = &self.ranking {
            y += 30.0;
            s.text(left, y, 24, INK, "start", "bold", &ranking.title);
            let bars = &ranking.bars[..ranking.bars.len().min(8)];
            let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
            let mut by = y + 24.0;
            for (i, (label, value)) in bars.iter().enumerate() {
                let w = if max > 0.0 {
                    (value / max) * 620.0
                } else {
                    0.0
                };
                s.text(
                    left + 230.0,
                    by + 22.0,
                    18,
                    INK,
                    "end",
                    "normal",
                    &cut(label, 20),
                );
                s.rect(
                    left + 245.0,
                    by + 6.0,
                    w.max(1.0),
                    22.0,
                    PALETTE[i % PALETTE.len()],
                );
                s.text(
                    left + 255.0 + w,
                    by + 23.0,
                    18,
                    MUTED,
                    "start",
                    "normal",
                    &ranking.format.write(*value),
                );
                by += 32.0;
            }
            y = by + 30.0;
            let columns = ranking.columns.len().max(1);
            let width = (right - left) / columns as f64;
            for (c, title) in ranking.columns.iter().enumerate() {
                s.text(
                    left + width * c as f64,
                    y,
                    18,
                    MUTED,
                    "start",
                    "bold",
                    &cut(title, 22),
                );
            }
            for row in ranking.rows.iter().take(5) {
                y += 32.0;
                for (c, cell) in row.iter().enumerate() {
                    s.text(
                        left + width * c as f64,
                        y,
                        18,
                        INK,
                        "start",
                        "normal",
                        &cut(cell, 26),
                    );
                }
            }
        }

        if !self.hidden.is_empty() {
            y += 60.0;
            s.text(
                left,
                y,
                20,
                MUTED,
                "start",
                "bold",
                l.say("Not shown to this reader", "该读者无权查看"),
            );
            for (title, why) in &self.hidden {
                y += 30.0;
                s.text(
                    left,
                    y,
                    16,
                    MUTED,
                    "start",
                    "normal",
                    &cut(&format!("{title}: {why}"), 110),
                );
            }
        }
        s.text(
            left,
            f64::from(HEIGHT) - 60.0,
            16,
            MUTED,
            "start",
            "normal",
            l.say(
                "citybrain · every figure read under the reader's grants, audited",
                "城市大脑 · 每项数据均按读者授权读取并留痕审计",
            ),
        );
        s.0.push_str("</svg>\n");
        s.0
    }

    fn line_chart(&self, s: &mut Svg, series: &SeriesChart, x0: f64, y0: f64, w: f64, h: f64) {
        let plot_left = x0 + 90.0;
        let plot_w = w - 90.0;
        let plot_h = h - 70.0;
        let values = series.lines.iter().flat_map(|l| l.1.iter().map(|p| p.1));
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if !lo.is_finite() {
            s.text(
                x0,
                y0 + 40.0,
                18,
                MUTED,
                "start",
                "normal",
                self.lang.say("No data for this day.", "该日无数据。"),
            );
            return;
        }
        if hi - lo < 1e-9 {
            hi += 1.0;
            lo -= 1.0;
        }
        let pad = (hi - lo) * 0.08;
        let (lo, hi) = (lo - pad, hi + pad);
        let x = |hours: f64| plot_left + hours.clamp(0.0, 24.0) / 24.0 * plot_w;
        let y = |v: f64| y0 + plot_h - (v - lo) / (hi - lo) * plot_h;
        for i in 0..=4 {
            let v = lo + (hi - lo) * f64::from(i) / 4.0;
            s.line(plot_left, y(v), plot_left + plot_w, y(v), LINE, 1.0);
            s.text(
                plot_left - 10.0,
                y(v) + 6.0,
                16,
                MUTED,
                "end",
                "normal",
                &series.format.write(v),
            );
        }
        for hour in (0..=24).step_by(3) {
            let hx = x(f64::from(hour));
            s.text(
                hx,
                y0 + plot_h + 26.0,
                16,
                MUTED,
                "middle",
                "normal",
                &format!("{hour:02}:00"),
            );
        }
        for (i, (name, points)) in series.lines.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let path: Vec<String> = points
                .iter()
                .map(|(h, v)| format!("{:.1},{:.1}", x(*h), y(*v)))
                .collect();
            s.0.push_str(&format!(
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2.5"/>"#,
                path.join(" ")
            ));
            s.0.push('\n');
            let lx = plot_left + (i as f64) * 150.0;
            s.rect(lx, y0 + plot_h + 44.0, 18.0, 6.0, colour);
            s.text(
                lx + 26.0,
                y0 + plot_h + 54.0,
                16,
                INK,
                "start",
                "normal",
                &cut(name, 14),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_writes_each_figure_and_escapes_text() {
        let b = Briefing {
            city: "Hangzhou".into(),
            cockpit: "City <leader> & co".into(),
            day: "2026-11-22".into(),
            lang: Lang::En,
            kpis: vec![KpiLine {
                panel: "vehicles".into(),
                title: "Vehicles".into(),
                unit: "vehicles".into(),
                format: Format::Int,
                value: Some(20021.0),
                week_before: Some(18000.0),
                level: None,
            }],
            series: Some(SeriesChart {
                title: "Delay".into(),
                format: Format::Decimal,
                lines: vec![("city".into(), vec![(0.0, 1.0), (8.0, 1.8), (23.75, 1.0)])],
            }),
            ranking: Some(RankingTable {
                title: "Worst links".into(),
                columns: vec!["Link".into(), "Delay".into()],
                rows: vec![vec!["347".into(), "2.37".into()]],
                bars: vec![("347".into(), 2.37)],
                format: Format::Decimal,
            }),
            hidden: vec![("Enterprises".into(), "needs a grant".into())],
        };
        let svg = b.svg();
        assert!(svg.contains(">20,021 vehicles<"), "{svg}");
        assert!(svg.contains(">18,000<") && svg.contains(">+11%<"));
        assert!(svg.contains("City &lt;leader&gt; &amp; co"));
        assert!(svg.contains("<polyline") && svg.contains("Enterprises: needs a grant"));
        assert_eq!(change(Some(90.0), Some(100.0)), "−10%");
        assert_eq!(change(Some(1.0), None), "—");
    }
}
