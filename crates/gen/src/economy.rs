//! A synthetic economy for policy delivery: enterprises with the facts subsidy policies
//! read (registry, staff, tax, social insurance, R&D, trade, investment, tea purchases),
//! deterministic for a seed, at 678,000 firms for scale 1 (Hangzhou's 亲清在线 served
//! 678,000 enterprises). Sizes are log-normal, most firms small, a few large, so that each
//! policy finds some firms eligible and many not.

use std::io::Write;

use crate::rng::Rng;

/// Fen per yuan: amounts below are written as yuan × FEN.
const FEN: i64 = 100;

/// Enterprises at scale 1.
pub const FIRMS_AT_SCALE_1: u64 = 678_000;

const DISTRICTS: [&str; 10] = [
    "上城区",
    "拱墅区",
    "西湖区",
    "滨江区",
    "萧山区",
    "余杭区",
    "临平区",
    "钱塘区",
    "富阳区",
    "临安区",
];
const INDUSTRIES: [(&str, f64); 7] = [
    ("retail", 0.30),
    ("manufacturing", 0.22),
    ("it", 0.15),
    ("food", 0.10),
    ("logistics", 0.10),
    ("services", 0.10),
    ("tea", 0.03),
];

/// The CSV header: `enterprise_id` and every fact, money in yuan with two decimals.
pub const HEADER: &str = "enterprise_id,district,industry,employees,founded,small_business,high_tech,high_tech_since,revenue,revenue_prev,tax_paid,credit_rating,rd_expense,patents_granted,insurance_paid,insurance_arrears,laid_off,graduates_hired,new_hires_local,disabled_employees,training_hours,trainees,rent_paid,exports,exports_prev,energy_saving_investment,equipment_investment,digital_investment,tea_kg_from_farmers,first_listing";

/// How amounts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Yuan with two decimals (`1234.56`), as people write them.
    Yuan,
    /// Integer fen (`123456`), as the hub's money fields take them.
    Fen,
}

fn amount(fen: i64, unit: Unit) -> String {
    match unit {
        Unit::Yuan => format!("{}.{:02}", fen / 100, fen % 100),
        Unit::Fen => fen.to_string(),
    }
}

/// The hub dataset the economy is published as (money in fen).
pub const DEFINITION: (&str, &str) = (
    "market.enterprises.toml",
    include_str!("../definitions/market.enterprises.toml"),
);

fn date(days: i64) -> String {
    citybrain_core::Date(days as i32).to_string()
}

/// Writes `firms` enterprises as CSV, money in yuan.
pub fn write_csv(seed: u64, firms: u64, out: &mut dyn Write) -> std::io::Result<()> {
    write_csv_in(seed, firms, Unit::Yuan, out)
}

/// Writes `firms` enterprises as CSV, money in `unit`.
pub fn write_csv_in(seed: u64, firms: u64, unit: Unit, out: &mut dyn Write) -> std::io::Result<()> {
    let yuan = |fen: i64| amount(fen, unit);
    let mut r = Rng::new(seed ^ 0x4543_4f4e);
    writeln!(out, "{HEADER}")?;
    let today = i64::from(citybrain_core::Date::from_ymd(2025, 1, 1).0);
    for id in 1..=firms {
        let mut pick = r.f64();
        let industry = INDUSTRIES
            .iter()
            .find(|(_, share)| {
                pick -= share;
                pick < 0.0
            })
            .map_or("services", |(name, _)| name);
        let district = DISTRICTS[r.below(DISTRICTS.len() as u64) as usize];
        let employees = ((1.8 + 1.3 * r.normal()).exp().round() as i64).clamp(1, 20_000);
        let founded = today - 30 - r.below(365 * 25) as i64;
        // Revenue per employee around 400,000 yuan, wide spread.
        let revenue = (employees as f64 * 400_000.0 * (0.7 * r.normal()).exp() * 100.0) as i64;
        let growth = 0.06 + 0.15 * r.normal();
        let revenue_prev = (revenue as f64 / (1.0 + growth).max(0.2)) as i64;
        let small_business = employees <= 50 && revenue < 50_000_000 * FEN;
        let tech_minded = matches!(industry, "it" | "manufacturing") && r.f64() < 0.5;
        let rd_expense = if tech_minded {
            (revenue as f64 * (0.01 + 0.06 * r.f64())) as i64
        } else if r.f64() < 0.1 {
            (revenue as f64 * 0.01 * r.f64()) as i64
        } else {
            0
        };
        let high_tech = tech_minded && rd_expense > revenue / 30 && r.f64() < 0.4;
        let high_tech_since = if high_tech {
            today - 400 + r.below(700) as i64
        } else {
            today - 9000
        };
        let margin = 0.02 + 0.08 * r.f64();
        let tax_paid = (revenue as f64 * margin * 0.5) as i64;
        let credit_rating = ["A", "A", "B", "B", "B", "C", "D"][r.below(7) as usize];
        let patents = if tech_minded {
            (r.below(4) * r.below(4)) as i64
        } else {
            0
        };
        let insurance_paid = employees * (5_000 * FEN + r.below(3_000 * FEN as u64) as i64);
        let arrears = r.f64() < 0.04;
        let laid_off = if r.f64() < 0.7 {
            0
        } else {
            (employees as f64 * 0.12 * r.f64()) as i64
        };
        let graduates = if employees > 20 && r.f64() < 0.3 {
            r.below(employees as u64 / 10 + 1) as i64
        } else {
            0
        };
        let hires = if r.f64() < 0.5 {
            r.below(employees as u64 / 5 + 2) as i64
        } else {
            0
        };
        let disabled = if r.f64() < 0.15 {
            r.below(employees as u64 / 40 + 2) as i64
        } else {
            0
        };
        let trainees = if r.f64() < 0.25 {
            r.below(employees as u64 + 1) as i64
        } else {
            0
        };
        let training_hours = trainees * r.below(40) as i64;
        let rent = if r.f64() < 0.7 {
            employees * (8_000 * FEN + r.below(20_000 * FEN as u64) as i64)
        } else {
            0
        };
        let exporter = matches!(industry, "manufacturing" | "tea" | "food") && r.f64() < 0.3;
        let exports = if exporter {
            (revenue as f64 * (0.1 + 0.5 * r.f64())) as i64
        } else {
            0
        };
        let exports_prev = if exporter {
            (exports as f64 / (1.0 + 0.05 + 0.2 * r.normal()).max(0.3)) as i64
        } else {
            0
        };
        let invest = |r: &mut Rng, p: f64, scale: f64| -> i64 {
            if r.f64() < p {
                (revenue as f64 * scale * r.f64()) as i64
            } else {
                0
            }
        };
        let energy = invest(&mut r, 0.05, 0.3);
        let equipment = if industry == "manufacturing" {
            invest(&mut r, 0.3, 0.5)
        } else {
            0
        };
        let digital = invest(&mut r, 0.15, 0.1);
        let tea_kg = if industry == "tea" {
            (20_000.0 * (1.2 * r.normal()).exp()) as i64
        } else {
            0
        };
        let listing = employees > 500 && r.f64() < 0.02;
        writeln!(
            out,
            "{id},{district},{industry},{employees},{},{small_business},{high_tech},{},{},{},{},{credit_rating},{},{patents},{},{arrears},{laid_off},{graduates},{hires},{disabled},{training_hours},{trainees},{},{},{},{},{},{},{tea_kg},{listing}",
            date(founded),
            date(high_tech_since),
            yuan(revenue),
            yuan(revenue_prev),
            yuan(tax_paid),
            yuan(rd_expense),
            yuan(insurance_paid),
            yuan(rent),
            yuan(exports),
            yuan(exports_prev),
            yuan(energy),
            yuan(equipment),
            yuan(digital),
        )?;
    }
    Ok(())
}
