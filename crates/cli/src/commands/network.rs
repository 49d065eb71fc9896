//! `citybrain network import`: a city's road network from its GIS files (GeoJSON roads,
//! checkpoints as GeoJSON points or a CSV with coordinates, district polygons) as the hub's
//! link and checkpoint tables, ready for `citybrain ingest`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Links between adjacent checkpoints along the roads (length, free-flow time from the
    /// speed limit or road class, fewest lanes, district), written as transport.links and
    /// transport.checkpoints NDJSON in --out.
    #[command(
        after_help = "OpenStreetMap: pass the extract itself (--roads city.osm.pbf, from Geofabrik, BBBike or
`osmium extract`): ways tagged highway for cars become roads.
then: citybrain ingest transport.links net/links.ndjson; citybrain ingest transport.checkpoints net/checkpoints.ndjson"
    )]
    Import {
        /// Roads: an OpenStreetMap extract (.osm.pbf), or GeoJSON LineString/
        /// MultiLineString features with maxspeed (km/h) or highway/fclass (road class),
        /// oneway and lanes properties.
        #[arg(long)]
        roads: PathBuf,
        /// Checkpoints: GeoJSON Point features with a checkpoint_id property, or a CSV with
        /// checkpoint_id, lon and lat columns.
        #[arg(long)]
        checkpoints: PathBuf,
        /// District polygons (GeoJSON, a name property): each checkpoint's district.
        #[arg(long)]
        districts: Option<PathBuf>,
        /// The directory links.ndjson and checkpoints.ndjson go to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Checkpoints further than this from every road (metres) are left out and listed.
        #[arg(long, default_value_t = 50.0)]
        snap_m: f64,
        /// A checkpoint this close (metres) to an intersection is placed at it, so every
        /// road through the intersection passes it.
        #[arg(long, default_value_t = 30.0)]
        intersection_m: f64,
        /// The longest link searched for, in metres.
        #[arg(long, default_value_t = 5_000.0)]
        max_link_m: f64,
    },
    /// A synthetic grid network of about --links one-way links, in the CBEngine text format
    /// `gen --network` and `up --demo-network` read: for trying citybrain at a size no
    /// shipped network reaches (the cockpit's frame budget is measured on 50,000 links).
    #[command(
        after_help = "then: citybrain up --demo-network big.txt --scale 0.1   (a demo city on it)"
    )]
    Grid {
        /// How many one-way links (two per road), at least.
        #[arg(long, default_value_t = 50_000)]
        links: usize,
        /// The grid's centre, LON,LAT (default: Hangzhou's West Lake).
        #[arg(long, default_value = "120.16,30.27", value_parser = lon_lat)]
        centre: (f64, f64),
        /// Metres between neighbouring intersections.
        #[arg(long, default_value_t = 250.0)]
        spacing_m: f64,
        /// The same seed gives the same network, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn lon_lat(s: &str) -> Result<(f64, f64), String> {
    let (lon, lat) = s.split_once(',').ok_or("give LON,LAT, e.g. 120.16,30.27")?;
    let lon: f64 = lon
        .trim()
        .parse()
        .map_err(|_| format!("'{lon}' is not a longitude"))?;
    let lat: f64 = lat
        .trim()
        .parse()
        .map_err(|_| format!("'{lat}' is not a latitude"))?;
    if !(-180.0..=180.0).contains(&lon) || !(-85.0..=85.0).contains(&lat) {
        return Err(format!(
            "{lon},{lat} is not on the map (longitude ±180, latitude ±85)"
        ));
    }
    Ok((lon, lat))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `checkpoint_id,lon,lat[,...]` with a header row, columns in any order.
fn checkpoints_csv(path: &Path, text: &str) -> Result<Vec<citybrain_roads::Checkpoint>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header = reader.headers()?.clone();
    let column = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.contains(&h.trim().to_ascii_lowercase().as_str()))
            .with_context(|| format!("{}: no {} column in the header", path.display(), names[0]))
    };
    let (id, lon, lat) = (
        column(&["checkpoint_id", "id", "kkbh"])?,
        column(&["lon", "lng", "longitude", "x"])?,
        column(&["lat", "latitude", "y"])?,
    );
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record?;
        let line = i + 2;
        let field = |k: usize, name: &str| -> Result<&str> {
            record
                .get(k)
                .map(str::trim)
                .with_context(|| format!("{} line {line}: no {name} cell", path.display()))
        };
        let number = |k: usize, name: &str| -> Result<f64> {
            let v = field(k, name)?;
            v.parse().with_context(|| {
                format!(
                    "{} line {line}, column {name}: '{v}' is not a number",
                    path.display()
                )
            })
        };
        let id_text = field(id, "checkpoint_id")?;
        out.push(citybrain_roads::Checkpoint {
            id: id_text.parse().with_context(|| {
                format!(
                    "{} line {line}, column checkpoint_id: '{id_text}' is not an integer",
                    path.display()
                )
            })?,
            lon: number(lon, "lon")?,
            lat: number(lat, "lat")?,
        });
    }
    Ok(out)
}

pub fn run(args: Args) -> Result<()> {
    if let Command::Grid {
        links,
        centre,
        spacing_m,
        seed,
        out,
    } = args.command
    {
        if links == 0 || !(10.0..=10_000.0).contains(&spacing_m) {
            bail!("--links must be at least 1 and --spacing-m between 10 and 10,000");
        }
        let text = citybrain_gen::Network::grid_text(links, centre, spacing_m, seed);
        std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
        let net = citybrain_gen::Network::parse(&text).map_err(anyhow::Error::msg)?;
        println!(
            "{}: {} intersections, {} one-way links, {:.0} m apart around {},{}\nthen: citybrain up --demo-network {} --scale 0.1",
            out.display(),
            net.intersections.len(),
            net.roads.len(),
            spacing_m,
            centre.0,
            centre.1,
            out.display()
        );
        return Ok(());
    }
    let Command::Import {
        roads,
        checkpoints,
        districts,
        out,
        snap_m,
        intersection_m,
        max_link_m,
    } = args.command
    else {
        unreachable!("grid is answered above")
    };
    let (road_list, skipped) = if roads.to_string_lossy().ends_with(".pbf") {
        let bytes =
            std::fs::read(&roads).with_context(|| format!("reading {}", roads.display()))?;
        citybrain_roads::parse_osm_pbf(&bytes)
    } else {
        citybrain_roads::parse_roads(&read(&roads)?)
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", roads.display()))?;
    if road_list.is_empty() {
        bail!(
            "{} has no roads for cars (LineString features, or OpenStreetMap ways tagged highway): is it the road layer?",
            roads.display()
        );
    }
    let text = read(&checkpoints)?;
    let points = if text.trim_start().starts_with('{') {
        citybrain_roads::parse_checkpoints(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", checkpoints.display()))?
    } else {
        checkpoints_csv(&checkpoints, &text)?
    };
    let district_list = match &districts {
        Some(path) => citybrain_roads::parse_districts(&read(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => Vec::new(),
    };
    let imported = citybrain_roads::import(
        &road_list,
        &points,
        &district_list,
        citybrain_roads::Options {
            snap_m,
            intersection_m,
            max_link_m,
        },
    );
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, lines: Vec<serde_json::Value>| -> Result<PathBuf> {
        let path = out.join(name);
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?,
        );
        for line in lines {
            serde_json::to_writer(&mut file, &line)?;
            file.write_all(b"\n")?;
        }
        file.flush()?;
        Ok(path)
    };
    let links = write(
        "links.ndjson",
        imported
            .links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "link_id": l.link_id, "from_checkpoint": l.from, "to_checkpoint": l.to,
                    "length_m": (l.length_m * 10.0).round() / 10.0,
                    "freeflow_s": (l.freeflow_s * 100.0).round() / 100.0,
                    "lanes": l.lanes, "district": l.district,
                })
            })
            .collect(),
    )?;
    let cps = write(
        "checkpoints.ndjson",
        imported
            .checkpoints
            .iter()
            .map(|c| {
                serde_json::json!({
                    "checkpoint_id": c.id, "loc": {"lon": c.lon, "lat": c.lat},
                    "district": c.district, "signalized": null,
                })
            })
            .collect(),
    )?;
    println!(
        "{} roads ({} at the default {} km/h for want of a limit or class{}), {} checkpoints on the network, {} links",
        road_list.len(),
        imported.roads_at_default_speed,
        citybrain_roads::geojson::DEFAULT_SPEED_KMH,
        if skipped > 0 {
            format!("; {skipped} not roads for cars or not lines, skipped")
        } else {
            String::new()
        },
        imported.checkpoints.len(),
        imported.links.len()
    );
    for (id, d) in &imported.unmatched {
        if d.is_finite() {
            println!(
                "  checkpoint {id}: nearest road {d:.0} m away, over --snap-m {snap_m}: left out"
            );
        } else {
            println!("  checkpoint {id}: no road near it: left out");
        }
    }
    for id in &imported.duplicates {
        println!("  checkpoint {id}: listed more than once, the first kept");
    }
    if !imported.isolated.is_empty() {
        println!(
            "  {} checkpoints with no link (no other checkpoint within --max-link-m {max_link_m} m along the roads): {:?}",
            imported.isolated.len(),
            imported.isolated
        );
    }
    println!("wrote {} and {}", links.display(), cps.display());
    println!(
        "next: citybrain ingest transport.links {}   and   citybrain ingest transport.checkpoints {}",
        links.display(),
        cps.display()
    );
    Ok(())
}
