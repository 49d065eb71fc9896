//! Services that find the citizen (主动服务): a resident eligible for a service they do not
//! receive becomes a task for their grid worker before they ask.
//!
//! - `facts`: what departments publish about residents (registry, disability certificates,
//!   household income, social insurance, enrolments), joined into one record per resident;
//!   the facts a rule may read (`FACTS`).
//! - `rules`: service rules in the policy language of policy delivery (`citybrain_rules`),
//!   checked against the facts, with a deadline per service (`rules/services.toml`).
//! - `engine`: the decisions on the data's own clock: everyone each morning with the fast
//!   evaluator, the residents a change touches with the interpreter; a task per service and
//!   resident, ever.
//! - `tasks`: the task book and its lifecycle (open, accepted, done, refused, escalated).
//! - `demo`: the demo city's people and the truth of who should get which task.
//!
//! No I/O: the server's `services` scene feeds it the change feed and stores what it opens.

pub mod alarms;
pub mod codes;
pub mod demo;
pub mod dispatch;
pub mod engine;
pub mod facts;
pub mod rules;
pub mod tasks;

pub use engine::{Engine, NewTask, explain};
pub use facts::{
    CertificateRow, EnrolmentRow, FACTS, IncomeRow, InsuranceRow, Population, Resident,
    ResidentRow, Update,
};
pub use rules::{SHIPPED_RULES, SHIPPED_SLA, Service, ServiceRules};
pub use tasks::{State, TaskBook, TaskInfo};

/// The household registry (public security).
pub const RESIDENTS: &str = "registry.residents";
/// Disability certificates (civil affairs).
pub const CERTIFICATES: &str = "civil.disability_certificates";
/// Household income assessments (civil affairs).
pub const INCOMES: &str = "civil.household_income";
/// Employment and pensions (human resources).
pub const INSURANCE: &str = "hr.social_insurance";
/// Who already receives which service (civil affairs).
pub const ENROLMENTS: &str = "civil.enrolments";
/// Grids and their workers (community).
pub const GRIDS: &str = "community.grids";
/// The tasks opened (written by the scene).
pub const TASKS: &str = "services.tasks";
/// What happened to each task (written by the scene and its routes).
pub const TASK_EVENTS: &str = "services.task_events";

/// Where grid workers are (community).
pub const POSITIONS: &str = "community.worker_positions";
/// Alarms that need someone on site (community, from sensors).
pub const ALARMS: &str = "community.alarms";
/// Every step of every alarm's dispatch (written by the scene and its routes).
pub const ALARM_STEPS: &str = "services.alarm_steps";

/// Screening results (health), for health codes.
pub const SCREENING: &str = "health.screening_results";
/// Close contacts (health), for health codes.
pub const CONTACTS: &str = "health.close_contacts";
/// Education, title and salary (human resources), for talent codes.
pub const TALENT: &str = "hr.talent_facts";
/// Codes issued (written by the scene).
pub const CODES: &str = "services.codes";
/// Codes revoked (written by the scene).
pub const REVOCATIONS: &str = "services.code_revocations";

/// Hotel bookings (culture and tourism), for the one-call check-in.
pub const BOOKINGS: &str = "tourism.bookings";

/// The datasets the scene reads from the change feed.
pub const INPUTS: &[&str] = &[RESIDENTS, CERTIFICATES, INCOMES, INSURANCE, ENROLMENTS];

/// Definitions (file name, TOML) of the datasets of this scene, inputs and outputs.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "registry.residents.toml",
        include_str!("../definitions/registry.residents.toml"),
    ),
    (
        "civil.disability_certificates.toml",
        include_str!("../definitions/civil.disability_certificates.toml"),
    ),
    (
        "civil.household_income.toml",
        include_str!("../definitions/civil.household_income.toml"),
    ),
    (
        "hr.social_insurance.toml",
        include_str!("../definitions/hr.social_insurance.toml"),
    ),
    (
        "civil.enrolments.toml",
        include_str!("../definitions/civil.enrolments.toml"),
    ),
    (
        "community.grids.toml",
        include_str!("../definitions/community.grids.toml"),
    ),
    (
        "community.worker_positions.toml",
        include_str!("../definitions/community.worker_positions.toml"),
    ),
    (
        "community.alarms.toml",
        include_str!("../definitions/community.alarms.toml"),
    ),
    (
        "services.alarm_steps.toml",
        include_str!("../definitions/services.alarm_steps.toml"),
    ),
    (
        "health.screening_results.toml",
        include_str!("../definitions/health.screening_results.toml"),
    ),
    (
        "health.close_contacts.toml",
        include_str!("../definitions/health.close_contacts.toml"),
    ),
    (
        "hr.talent_facts.toml",
        include_str!("../definitions/hr.talent_facts.toml"),
    ),
    (
        "services.codes.toml",
        include_str!("../definitions/services.codes.toml"),
    ),
    (
        "services.code_revocations.toml",
        include_str!("../definitions/services.code_revocations.toml"),
    ),
    (
        "tourism.bookings.toml",
        include_str!("../definitions/tourism.bookings.toml"),
    ),
    (
        "services.tasks.toml",
        include_str!("../definitions/services.tasks.toml"),
    ),
    (
        "services.task_events.toml",
        include_str!("../definitions/services.task_events.toml"),
    ),
];
