//! The daily briefing (城市日报): one page per cockpit and local day, composed from the
//! cockpit's briefing panels run **as the reader** (so a briefing never shows more than its
//! reader's grants), laid out by `citybrain_cockpits::briefing` as SVG, rasterised with
//! resvg (PNG) and wrapped in a one-page PDF. A finished day's pages are stored under
//! `DATA/briefings/<department>/<cockpit>/` for the department that read them; each morning
//! at 06:00 city time the server makes yesterday's for every cockpit, as its department.

use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use citybrain_cockpits::briefing::{Briefing, KpiLine, Lang, RankingTable, SeriesChart};
use citybrain_cockpits::{Cockpit, Format, Kind, Panel, Period};
use citybrain_core::{Date, PrincipalName, Timestamp};
use citybrain_gov::{Principal, Role};
use serde::Deserialize;
use serde_json::Value;

use crate::cockpits::{PanelResult, run_panel};
use crate::error::ErrorCode;
use crate::extract::{Path, Query};
use crate::{ApiError, AppState, blocking, now};

/// A panel's rows, or why the page cannot show it: a missing grant, or a query that no
/// longer runs (a dataset changed under a hand-edited file) — one broken panel must not
/// cost the city its whole morning page.
async fn read(
    state: &AppState,
    me: &Principal,
    cockpit: &Cockpit,
    panel: &Panel,
    period: &Period,
) -> PanelResult {
    match run_panel(state, me, cockpit, panel, period).await {
        Ok(result) => result,
        Err(e) => PanelResult::Denied(format!("could not be read: {}", e.message())),
    }
}

/// Runs the cockpit's briefing panels for `day` as `me`.
pub async fn compose(
    state: &AppState,
    me: &Principal,
    cockpit: &Cockpit,
    day: Date,
    lang: Lang,
) -> Result<Briefing, ApiError> {
    let zone = &state.city.time_zone;
    let period = Period::of_day(day, zone);
    let before = Period::of_day(Date(day.0 - 7), zone);
    let mut hidden = Vec::new();
    let mut kpis = Vec::new();
    let title = |p: &Panel| lang.pick(&p.title).to_string();
    for panel in cockpit
        .panels
        .iter()
        .filter(|p| p.briefing && p.kind == Kind::Kpi)
    {
        let value = match read(state, me, cockpit, panel, &period).await {
            PanelResult::Rows(rows) => first_value(&rows),
            PanelResult::Denied(why) => {
                hidden.push((title(panel), why));
                continue;
            }
        };
        let week_before = match read(state, me, cockpit, panel, &before).await {
            PanelResult::Rows(rows) => first_value(&rows),
            PanelResult::Denied(_) => None,
        };
        kpis.push(KpiLine {
            panel: panel.id.clone(),
            title: title(panel),
            unit: panel
                .unit
                .as_ref()
                .map(|u| lang.pick(u).to_string())
                .unwrap_or_default(),
            format: panel.format,
            value,
            week_before,
            level: value.and_then(|v| panel.level(v)),
        });
    }
    let mut series = None;
    if let Some(panel) = cockpit
        .panels
        .iter()
        .find(|p| p.briefing && p.kind == Kind::Series)
    {
        match read(state, me, cockpit, panel, &period).await {
            PanelResult::Rows(rows) => series = Some(lines(panel, &rows, &period, title(panel))),
            PanelResult::Denied(why) => hidden.push((title(panel), why)),
        }
    }
    let mut ranking = None;
    if let Some(panel) = cockpit
        .panels
        .iter()
        .find(|p| p.briefing && p.kind == Kind::Ranking)
    {
        match read(state, me, cockpit, panel, &period).await {
            PanelResult::Rows(rows) => ranking = Some(table(panel, &rows, lang, title(panel))),
            PanelResult::Denied(why) => hidden.push((title(panel), why)),
        }
    }
    let city = match (lang, &state.city.name_zh) {
        (Lang::Zh, Some(zh)) => zh.clone(),
        _ => state.city.name.clone(),
    };
    Ok(Briefing {
        city,
        cockpit: lang.pick(&cockpit.title).to_string(),
        day: day.to_string(),
        lang,
        kpis,
        series,
        ranking,
        hidden,
    })
}

fn first_value(rows: &[serde_json::Map<String, Value>]) -> Option<f64> {
    rows.first()
        .and_then(|r| r.get("value"))
        .and_then(Value::as_f64)
}

fn lines(
    panel: &Panel,
    rows: &[serde_json::Map<String, Value>],
    period: &Period,
    title: String,
) -> SeriesChart {
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for row in rows {
        let (Some(t), Some(v)) = (
            row.get("t")
                .and_then(Value::as_str)
                .and_then(|t| Timestamp::parse(t).ok()),
            row.get("value").and_then(Value::as_f64),
        ) else {
            continue;
        };
        let name = row.get("series").map_or_else(|| title.clone(), cell);
        let hours = (t.0 - period.day_start.0) as f64 / 3.6e9;
        match lines.iter_mut().find(|l| l.0 == name) {
            Some(line) => line.1.push((hours, v)),
            None => lines.push((name, vec![(hours, v)])),
        }
    }
    SeriesChart {
        title,
        format: panel.format,
        lines,
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn table(
    panel: &Panel,
    rows: &[serde_json::Map<String, Value>],
    lang: Lang,
    title: String,
) -> RankingTable {
    let columns: Vec<(String, String, Format)> = if panel.columns.is_empty() {
        rows.first()
            .map(|r| {
                r.keys()
                    .map(|k| {
                        let format = if k == "value" {
                            panel.format
                        } else {
                            Format::Text
                        };
                        (k.clone(), k.clone(), format)
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        panel
            .columns
            .iter()
            // A sparkline is the page's; the briefing's table has no room for it.
            .filter(|c| c.format != Format::Spark)
            .map(|c| (c.name.clone(), lang.pick(&c.title).to_string(), c.format))
            .collect()
    };
    let write = |v: Option<&Value>, format: Format| match (v, format) {
        (Some(Value::Number(n)), f) if f != Format::Text => {
            n.as_f64().map_or_else(|| n.to_string(), |x| f.write(x))
        }
        (Some(v), _) => cell(v),
        (None, _) => "—".into(),
    };
    let label_column = columns.iter().find(|c| c.0 != "value").map(|c| c.0.clone());
    // Bars are the `value` column, written as that column is.
    let bar_format = columns
        .iter()
        .find(|c| c.0 == "value")
        .map_or(panel.format, |c| c.2);
    RankingTable {
        title,
        columns: columns.iter().map(|c| c.1.clone()).collect(),
        rows: rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|(name, _, f)| write(r.get(name), *f))
                    .collect()
            })
            .collect(),
        bars: rows
            .iter()
            .filter_map(|r| {
                let label = label_column
                    .as_ref()
                    .and_then(|c| r.get(c))
                    .map_or_else(String::new, cell);
                Some((label, r.get("value")?.as_f64()?))
            })
            .collect(),
        format: bar_format,
    }
}

/// The system's fonts, read once (a CJK font such as Debian's fonts-wqy-microhei is what
/// writes the Chinese page; without one, Chinese text is left out of the PNG).
fn fonts() -> Arc<resvg::usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = resvg::usvg::fontdb::Database::new();
            db.load_system_fonts();
            Arc::new(db)
        })
        .clone()
}

/// The page as RGBA pixels.
fn raster(svg: &str) -> Result<resvg::tiny_skia::Pixmap, String> {
    let options = resvg::usvg::Options {
        fontdb: fonts(),
        ..Default::default()
    };
    let tree = resvg::usvg::Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("the page has no size")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    Ok(pixmap)
}

/// An SVG drawn as PNG (a code's QR symbol).
pub fn png(svg: &str) -> Result<Vec<u8>, String> {
    raster(svg)?.encode_png().map_err(|e| e.to_string())
}

/// The page drawn once, as PNG and as a one-page A4 PDF holding the same pixels as an
/// image (text is not selectable; the SVG carries the page as text).
pub fn png_and_pdf(svg: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let pixmap = raster(svg)?;
    let png = pixmap.encode_png().map_err(|e| e.to_string())?;
    Ok((png, pdf(&pixmap)?))
}

fn pdf(pixmap: &resvg::tiny_skia::Pixmap) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let (w, h) = (pixmap.width(), pixmap.height());
    // The page is drawn on white, so dropping alpha loses nothing.
    let rgb: Vec<u8> = pixmap
        .data()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&rgb).map_err(|e| e.to_string())?;
    let image = z.finish().map_err(|e| e.to_string())?;
    let (pw, ph) = (595.0_f64, 595.0 * f64::from(h) / f64::from(w));
    let content = format!("q {pw:.2} 0 0 {ph:.2} 0 0 cm /Im0 Do Q\n");
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let mut object = |out: &mut Vec<u8>, head: String, stream: Option<&[u8]>| {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{head}\n", offsets.len()).as_bytes());
        if let Some(bytes) = stream {
            out.extend_from_slice(b"stream\n");
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\nendstream\n");
        }
        out.extend_from_slice(b"endobj\n");
    };
    object(&mut out, "<< /Type /Catalog /Pages 2 0 R >>".into(), None);
    object(
        &mut out,
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(),
        None,
    );
    object(
        &mut out,
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.2} {ph:.2}] /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>"
        ),
        None,
    );
    object(
        &mut out,
        format!(
            "<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode /Length {} >>",
            image.len()
        ),
        Some(&image),
    );
    object(
        &mut out,
        format!("<< /Length {} >>", content.len()),
        Some(content.as_bytes()),
    );
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes(),
    );
    for offset in &offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            offsets.len() + 1
        )
        .as_bytes(),
    );
    Ok(out)
}

/// Where a department's stored pages of a cockpit live.
fn folder(data: &FsPath, department: &str, cockpit: &str) -> PathBuf {
    data.join("briefings").join(department).join(cockpit)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BriefingParams {
    /// The local day, YYYY-MM-DD (default: the day before the city's live time).
    day: Option<String>,
    /// png (default), pdf, svg, or json (the figures).
    format: Option<String>,
    /// en (default) or zh.
    lang: Option<String>,
}

/// Renders a page in one of the formats; stores finished days' PNG and PDF.
async fn render(
    state: &AppState,
    me: &Principal,
    cockpit: &Cockpit,
    day: Date,
    lang: Lang,
    format: &str,
) -> Result<(Vec<u8>, &'static str), ApiError> {
    let briefing = compose(state, me, cockpit, day, lang).await?;
    if format == "json" {
        let body = serde_json::to_vec(&briefing).map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok((body, "application/json"));
    }
    let svg = briefing.svg();
    if format == "svg" {
        return Ok((svg.into_bytes(), "image/svg+xml"));
    }
    let ended =
        Period::of_day(day, &state.city.time_zone).day_end.0 <= crate::cockpits::live_time(state).0;
    let dir = folder(state.hub.dir(), me.department.as_str(), &cockpit.id);
    let stem = format!("{day}.{}", if lang == Lang::Zh { "zh" } else { "en" });
    let pdf_wanted = format == "pdf";
    blocking(move || {
        let (png, pdf) = png_and_pdf(&svg)
            .map_err(|e| ApiError::internal(format!("drawing the briefing: {e}")))?;
        if ended {
            // Kept for the department that read it; a page is made again if asked again.
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(dir.join(format!("{stem}.png")), &png))
                .and_then(|()| std::fs::write(dir.join(format!("{stem}.pdf")), &pdf))
                .map_err(|e| {
                    ApiError::internal(format!("storing the briefing in {}: {e}", dir.display()))
                })?;
        }
        Ok(if pdf_wanted {
            (pdf, "application/pdf")
        } else {
            (png, "image/png")
        })
    })
    .await
}

#[utoipa::path(get, path = "/cockpits/{id}/briefing", tag = "cockpits", params(("id" = String, Path, description = "The cockpit"), BriefingParams), responses((status = 200, description = "The day's briefing page for this reader: PNG, PDF, SVG or its figures as JSON", body = Object)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<BriefingParams>,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::bad_request(ErrorCode::InvalidQuery, m);
    let lang = match params.lang.as_deref() {
        None => Lang::En,
        Some(text) => Lang::parse(text).ok_or_else(|| bad(format!("lang={text}: en or zh")))?,
    };
    let format = params.format.unwrap_or_else(|| "png".into());
    if !matches!(format.as_str(), "png" | "pdf" | "svg" | "json") {
        return Err(bad(format!("format={format}: png, pdf, svg or json")));
    }
    let day = match params.day.as_deref() {
        Some(text) => Date::parse(text)
            .map_err(|e| e.to_string())
            .and_then(|d| {
                crate::cockpits::in_range(d.start())
                    .then_some(d)
                    .ok_or_else(|| crate::cockpits::RANGE.to_string())
            })
            .map_err(|e| bad(format!("day={text}: {e}")))?,
        None => Date(
            state
                .city
                .time_zone
                .local_day(crate::cockpits::live_time(&state))
                .0
                - 1,
        ),
    };
    let cockpit = crate::cockpits::find_for(&state, &me, &id).await?;
    let (body, content_type) = render(&state, &me, &cockpit, day, lang, &format).await?;
    let ext = if format == "json" {
        "json"
    } else {
        format.as_str()
    };
    let disposition = format!("inline; filename=\"briefing-{id}-{day}.{ext}\"");
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// Each morning at 06:00 city time, yesterday's briefing of every cockpit, read as its own
/// department (audited as `briefing` of that department) and stored; runs until shutdown.
pub fn schedule(state: AppState) {
    tokio::spawn(async move {
        let mut closing = state.closing.subscribe();
        loop {
            let zone = &state.city.time_zone;
            let today = zone.local_day(now());
            let mut next = Timestamp(zone.day_start(today).0 + 6 * 3_600_000_000);
            if next.0 <= now().0 {
                next = Timestamp(zone.day_start(Date(today.0 + 1)).0 + 6 * 3_600_000_000);
            }
            let wait = std::time::Duration::from_micros((next.0 - now().0).max(0) as u64);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = closing.changed() => return,
            }
            let day = Date(zone.local_day(now()).0 - 1);
            let data = state.hub.dir().to_path_buf();
            let stored = crate::cockpits::load(&crate::cockpits::dir(&data)).0;
            for s in stored {
                let Ok(department) = citybrain_core::DepartmentId::parse(&s.cockpit.department)
                else {
                    continue;
                };
                let reader = Principal {
                    name: PrincipalName::parse("briefing").expect("a valid name"),
                    department,
                    role: Role::Reader,
                };
                for lang in [Lang::En, Lang::Zh] {
                    if let Err(e) = render(&state, &reader, &s.cockpit, day, lang, "png").await {
                        tracing::warn!(cockpit = %s.cockpit.id, %day, error = %e, "the morning briefing failed");
                    }
                }
            }
        }
    });
}
